"""Every backend passes the same contract (services/common/generation/contract.py), each against
the real model: in process, through the gateway's TGI routes with the real ``text_generation``
client, and through an OpenAI-compatible server with the real ``openai`` client."""

import pytest

from services.common.generation.base import UnknownAdapter
from services.common.generation.contract import GenerationBackendContract
from services.common.generation.local_backend import LocalBackend
from services.common.generation.openai_backend import OpenAIBackend
from services.common.generation.tgi_backend import TgiBackend

pytestmark = pytest.mark.integration


class TestLocalBackend(GenerationBackendContract):
    unknown_adapter_error = UnknownAdapter

    @pytest.fixture(scope="class")
    def backend(self, engine):
        backend = LocalBackend(engine, timeout_s=120)
        backend.warm_up()
        return backend


class TestTgiBackend(GenerationBackendContract):
    unknown_adapter_error = UnknownAdapter  # the gateway's routes say "unknown_adapter"

    @pytest.fixture(scope="class")
    def backend(self, tgi_url):
        backend = TgiBackend(tgi_url, timeout_s=120)
        backend.warm_up()
        return backend

    def test_warm_up_learns_the_model_id(self, backend, engine):
        assert backend.model == engine.model_id


class TestOpenAIBackend(GenerationBackendContract):
    unknown_adapter_error = UnknownAdapter  # a 404 for "<model>:<adapter>"

    @pytest.fixture(scope="class")
    def backend(self, openai_url):
        backend = OpenAIBackend(openai_url, "not-needed", "local", timeout_s=120)
        backend.warm_up()
        return backend
