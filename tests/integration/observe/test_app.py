"""The trace viewer's app and entry point (services/observe/app.py, __main__.py) beyond what
test_trace_viewer.py covers (spans posted as OTLP bytes are listed and drawn; the store's bound):
``python -m services.observe`` listens where CUSTOMLLM_OTEL_ENDPOINT points, the SDK's own
OTLP/HTTP exporter (what every service uses with CUSTOMLLM_OTEL_EXPORTER=otlp) delivers to it,
an unknown trace is a page that says so, and the app keeps the store it was given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.observe.app import create_app
from services.observe.store import TraceStore

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def viewer_process():
    """``python -m services.observe`` on a free port named only by the OTLP endpoint setting."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/v1/traces"
    process = subprocess.Popen([sys.executable, "-m", "services.observe"],
                               env={**os.environ, "CUSTOMLLM_OTEL_ENDPOINT": endpoint},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the trace viewer did not start"
                time.sleep(0.2)
        yield endpoint, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_entry_point_listens_on_the_otlp_endpoint_and_takes_the_sdks_exports(
        viewer_process):
    endpoint, url = viewer_process
    provider = TracerProvider(resource=Resource.create({"service.name": "observe-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    tracer = provider.get_tracer("observe-test")
    with tracer.start_as_current_span("question") as root, \
            tracer.start_as_current_span("retrieve"):
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    listing = httpx.get(f"{url}/", timeout=10).text
    assert trace_id in listing and "observe-test" in listing
    page = httpx.get(f"{url}/traces/{trace_id}", timeout=10).text
    assert "question" in page and "retrieve" in page


def test_an_unknown_trace_is_a_page_that_says_so_with_the_id_escaped():
    client = TestClient(create_app())
    response = client.get("/traces/<b>x")
    assert response.status_code == 200
    assert "Trace not found" in response.text
    assert "No spans for &lt;b&gt;x" in response.text and "<b>" not in response.text
    assert "<table>" in client.get("/").text  # an empty listing, not an error


def test_the_app_keeps_the_store_it_was_given():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "given"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("kept"):
        pass
    store = TraceStore(max_traces=5)
    client = TestClient(create_app(store))
    response = client.post("/v1/traces", content=encode_spans(exporter.get_finished_spans())
                           .SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    [trace] = store.recent()
    assert [span.name for span in trace] == ["kept"] and trace[0].service == "given"
