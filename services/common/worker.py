"""Start a Faust worker for a service module with tracing and logging configured."""

from __future__ import annotations

import importlib
import sys

from services.common import event_loop, logs, metrics, telemetry
from services.common.config import get_settings


def run_worker(module: str, service_name: str) -> None:
    settings = get_settings()
    logs.configure(settings.log_level)
    telemetry.setup_tracing(service_name, settings)
    metrics.setup_metrics(service_name, settings)
    event_loop.install(settings.event_loop)
    app = importlib.import_module(module).app
    try:
        # Faust's CLI reads sys.argv; the worker's options are ours, not the caller's.
        sys.argv = [f"customllm-{service_name}", "worker", "--loglevel",
                    faust_log_level(settings.log_level), "--without-web"]
        app.main()
    finally:
        telemetry.shutdown_tracing()


def faust_log_level(level: str) -> str:
    """Faust's CLI spells levels its own way (warn, crit)."""
    names = {"warning": "warn", "critical": "crit", "fatal": "crit"}
    return names.get(level.lower(), level.lower())
