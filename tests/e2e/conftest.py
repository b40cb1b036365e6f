"""Fixtures for the query path: guardrails and rag workers plus the gateway, on top of the
ingest/embedder workers of the session."""

from __future__ import annotations

import os

import httpx
import pytest

from services.stack import services as worker_procs
from tests.support.stack import Workers, wait_for

GATEWAY_PORT = int(os.environ.get("CUSTOMLLM_TEST_GATEWAY_PORT", "28080"))


@pytest.fixture(scope="session")
def query_workers(stack, workers, otlp_receiver):
    env = {"CUSTOMLLM_OTEL_EXPORTER": "otlp", "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint,
           "CUSTOMLLM_GATEWAY_PORT": str(GATEWAY_PORT), "CUSTOMLLM_MAX_NEW_TOKENS": "48"}
    running = Workers(stack, env, names=("guardrails", "rag"))
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="session")
def gateway_url(stack, query_workers, otlp_receiver):
    env = {"CUSTOMLLM_OTEL_EXPORTER": "otlp", "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint,
           "CUSTOMLLM_GATEWAY_PORT": str(GATEWAY_PORT)}
    worker_procs.start(stack.state, "gateway", env=env)
    url = f"http://127.0.0.1:{GATEWAY_PORT}"

    def healthy() -> bool:
        if worker_procs.processes.read_pid(worker_procs.run_dir(stack.state), "gateway") is None:
            raise AssertionError(worker_procs.log_path(stack.state, "gateway").read_text()[-3000:])
        try:
            return httpx.get(f"{url}/healthz", timeout=2).json()["status"] == "ok"
        except httpx.HTTPError:
            return False

    wait_for(healthy, 120, interval_s=0.5, what="the gateway")
    yield url
    worker_procs.stop(stack.state, "gateway")


MODEL_SERVER_PORT = int(os.environ.get("CUSTOMLLM_TEST_MODEL_SERVER_PORT", "28081"))


@pytest.fixture(scope="session")
def model_server_url(stack):
    """The TGI-compatible model server as its own process on its internal port."""
    env = {"CUSTOMLLM_MODEL_SERVER_PORT": str(MODEL_SERVER_PORT)}
    worker_procs.start(stack.state, worker_procs.MODEL_SERVER, env=env)
    url = f"http://127.0.0.1:{MODEL_SERVER_PORT}"

    def ready() -> bool:
        if worker_procs.processes.read_pid(worker_procs.run_dir(stack.state),
                                           worker_procs.MODEL_SERVER) is None:
            raise AssertionError(worker_procs.log_path(
                stack.state, worker_procs.MODEL_SERVER).read_text()[-3000:])
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 300, interval_s=0.5, what="the model server")
    yield url
    worker_procs.stop(stack.state, worker_procs.MODEL_SERVER)


@pytest.fixture(scope="module")
def recorder(stack):
    """The audit recorder, for the modules whose flows read answer audits."""
    running = Workers(stack, {}, names=("audit",))
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture(scope="session")
def reply_client(stack, query_workers):
    from services.common.rpc import ReplyClient

    client = ReplyClient(stack.settings.kafka_bootstrap, client_id="tests")
    yield client
    client.close()
