"""Run the gateway with uvicorn: the one place that wires logging, telemetry and the app."""

from __future__ import annotations

from services.common import event_loop, logs, metrics, telemetry
from services.common.config import Settings
from services.gateway.config import gateway_settings


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from services.gateway.app import create_app

    logs.configure(settings.log_level)
    telemetry.setup_tracing("gateway", settings)
    metrics.setup_metrics("gateway", settings)
    config = gateway_settings()
    uvicorn.run(create_app(settings, config), host=host or config.gateway_host,
                port=port or config.gateway_port, log_level=settings.log_level.lower(),
                loop=event_loop.uvicorn_loop(settings.event_loop),
                timeout_graceful_shutdown=config.gateway_shutdown_grace_s)
