"""OpenTelemetry set-up and W3C trace-context propagation through Kafka headers.

One trace per document event: the publisher injects ``traceparent`` into the message headers,
every service extracts it and starts its span as a child, then injects again on what it sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from services.common.config import Settings

_configured = False

KafkaHeaders = list[tuple[str, bytes]]


def setup_tracing(service_name: str, settings: Settings,
                  exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Install a tracer provider once per process. ``exporter`` overrides the configured one
    (tests pass an in-memory exporter)."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        return provider if isinstance(provider, TracerProvider) else None
    # With exporter "none" a provider is still installed: trace ids are still created and
    # propagated (replies and logs carry them), they are just not exported.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is None and settings.otel_exporter == "none":
        pass
    elif exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.otel_exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint),
                               schedule_delay_millis=500)
        )
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()
        provider.shutdown()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers(ctx: otel_context.Context | None = None) -> KafkaHeaders:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return [(key, value.encode()) for key, value in carrier.items()]


def extract_context(headers: Iterable[tuple[str, bytes | str | None]] | dict | None
                    ) -> otel_context.Context:
    """Parent context from Kafka headers (list of pairs, as both client libraries give them)."""
    items: Sequence = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    carrier = {
        key: value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for key, value in items if value is not None
    }
    return propagate.extract(carrier)
