"""Entry point: ``python -m services.gateway`` serves the gateway with uvicorn."""

import uvicorn

from services.common import logs, metrics, telemetry
from services.common.config import get_settings
from services.gateway.app import create_app

if __name__ == "__main__":
    settings = get_settings()
    logs.configure(settings.log_level)
    telemetry.setup_tracing("gateway", settings)
    metrics.setup_metrics("gateway", settings)
    uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                log_level=settings.log_level.lower())
