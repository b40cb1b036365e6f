"""A local trace viewer: an OTLP/HTTP endpoint (the default CUSTOMLLM_OTEL_ENDPOINT) and two
HTML pages, so `customllm up --observe` shows one trace per document event or question."""

from __future__ import annotations

import html

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse

from services.observe.store import StoredSpan, TraceStore

STYLE = ("body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
         "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}"
         ".bar{background:#2a7ab9;height:10px}.err{color:#b00}code{font-size:12px}")


def create_app(store: TraceStore | None = None) -> FastAPI:
    app = FastAPI(title="customllm observe")
    app.state.store = store or TraceStore()

    @app.post("/v1/traces")
    async def receive_traces(request: Request) -> Response:
        app.state.store.ingest(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    @app.post("/v1/metrics")
    async def receive_metrics(request: Request) -> Response:
        await request.body()  # accepted so exporters do not retry; not displayed
        return Response(b"", media_type="application/x-protobuf")

    @app.get("/", response_class=HTMLResponse)
    def traces_page() -> str:
        rows = "".join(_trace_row(spans) for spans in app.state.store.recent())
        return _page("Recent traces", "<table><tr><th>trace</th><th>root</th><th>services</th>"
                     f"<th>spans</th><th>duration</th></tr>{rows}</table>")

    @app.get("/traces/{trace_id}", response_class=HTMLResponse)
    def trace_page(trace_id: str) -> str:
        spans = app.state.store.trace(trace_id)
        if not spans:
            return _page("Trace not found", f"<p>No spans for {html.escape(trace_id)}.</p>")
        return _page(f"Trace {trace_id}", _waterfall(spans))

    return app


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p><a href='/'>all traces</a></p>{body}</body></html>")


def _trace_row(spans: list[StoredSpan]) -> str:
    root = next((s for s in spans if not s.parent_span_id), spans[0])
    services = sorted({s.service for s in spans})
    duration = (max(s.end_ns for s in spans) - min(s.start_ns for s in spans)) / 1e6
    return (f"<tr><td><a href='/traces/{root.trace_id}'><code>{root.trace_id}</code></a></td>"
            f"<td>{html.escape(root.name)}</td><td>{html.escape(', '.join(services))}</td>"
            f"<td>{len(spans)}</td><td>{duration:.1f} ms</td></tr>")


def _waterfall(spans: list[StoredSpan]) -> str:
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    depth = _depths(spans)
    rows = []
    for span in spans:
        left = 100 * (span.start_ns - start) / total
        width = max(100 * (span.end_ns - span.start_ns) / total, 0.3)
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(span.attributes.items()))
        css = " class='err'" if span.status == "error" else ""
        rows.append(
            f"<tr{css}><td style='padding-left:{10 + 18 * depth[span.span_id]}px'>"
            f"{html.escape(span.name)}</td><td>{html.escape(span.service)}</td>"
            f"<td>{span.duration_ms:.1f} ms</td><td style='width:300px'><div class='bar' "
            f"style='margin-left:{left:.1f}%;width:{width:.1f}%'></div></td>"
            f"<td><code>{html.escape(attrs)[:400]}</code></td></tr>")
    return ("<table><tr><th>span</th><th>service</th><th>duration</th><th>timeline</th>"
            f"<th>attributes</th></tr>{''.join(rows)}</table>")


def _depths(spans: list[StoredSpan]) -> dict[str, int]:
    parents = {s.span_id: s.parent_span_id for s in spans}
    depths: dict[str, int] = {}
    for span in spans:
        depth, parent, seen = 0, parents.get(span.span_id), set()
        while parent and parent in parents and parent not in seen:
            seen.add(parent)
            depth += 1
            parent = parents[parent]
        depths[span.span_id] = depth
    return depths
