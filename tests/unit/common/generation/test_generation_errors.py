"""Remote backends report an unreachable server as a GenerationError naming it."""

import asyncio
import socket

import pytest

from services.common.generation.base import GenerationError, GenerationRequest
from services.common.generation.openai_backend import OpenAIBackend
from services.common.generation.tgi_backend import TgiBackend

pytestmark = pytest.mark.unit

REQUEST = GenerationRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=4)


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


async def _drain(backend):
    return [piece async for piece in backend.stream(REQUEST)]


@pytest.mark.parametrize("make", [
    lambda port: TgiBackend(f"http://127.0.0.1:{port}", timeout_s=5),
    lambda port: OpenAIBackend(f"http://127.0.0.1:{port}/v1", "k", "local", timeout_s=5),
], ids=["tgi", "openai"])
def test_unreachable_server_is_a_clear_generation_error(make, closed_port):
    backend = make(closed_port)
    for call in (backend.generate(REQUEST), _drain(backend)):
        with pytest.raises(GenerationError, match=f"127.0.0.1:{closed_port}.*unreachable"):
            asyncio.run(call)


def test_tgi_warm_up_tolerates_a_server_that_is_not_up_yet(closed_port):
    backend = TgiBackend(f"http://127.0.0.1:{closed_port}", timeout_s=2)
    backend.warm_up()
    assert backend.model == f"tgi@http://127.0.0.1:{closed_port}"
