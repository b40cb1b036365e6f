"""OpenTelemetry metrics: one meter per process, exported like the traces (none/console/OTLP).

Instruments are created once here so every service reports under the same names:
stage latencies, tokens, cost, cache results, DLQ records and indexing freshness.
"""

from __future__ import annotations

from functools import cache

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from services.common.config import Settings

_configured = False


def setup_metrics(service_name: str, settings: Settings) -> None:
    global _configured
    if _configured or settings.otel_exporter == "none":
        return
    if settings.otel_exporter == "console":
        exporter = ConsoleMetricExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(
            endpoint=settings.otel_endpoint.replace("/v1/traces", "/v1/metrics"))
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=10_000)
    metrics.set_meter_provider(MeterProvider(
        resource=Resource.create({"service.name": service_name}), metric_readers=[reader]))
    _configured = True


@cache
def instruments() -> dict[str, object]:
    meter = metrics.get_meter("customllm")
    return {
        "stage_ms": meter.create_histogram("customllm.stage.duration", unit="ms",
                                           description="latency of one pipeline stage"),
        "tokens": meter.create_counter("customllm.llm.tokens", unit="{token}"),
        "cost": meter.create_counter("customllm.llm.cost", unit="USD"),
        "cache": meter.create_counter("customllm.cache.lookups", unit="{lookup}"),
        "dlq": meter.create_counter("customllm.dlq.records", unit="{record}"),
        "freshness_ms": meter.create_histogram("customllm.ingest.freshness", unit="ms",
                                               description="event time to indexed"),
    }


def record_reply(stages: dict[str, float], prompt_tokens: int, completion_tokens: int,
                 cost_usd: float, cache_result: str) -> None:
    tools = instruments()
    for stage, ms in stages.items():
        tools["stage_ms"].record(ms, {"stage": stage})  # type: ignore[attr-defined]
    tools["tokens"].add(prompt_tokens, {"kind": "prompt"})  # type: ignore[attr-defined]
    tools["tokens"].add(completion_tokens, {"kind": "completion"})  # type: ignore[attr-defined]
    tools["cost"].add(cost_usd)  # type: ignore[attr-defined]
    tools["cache"].add(1, {"result": cache_result})  # type: ignore[attr-defined]
