"""Run the console with uvicorn on its own port (CUSTOMLLM_CONSOLE_PORT, 18090)."""

from __future__ import annotations

from services.common import logs
from services.common.config import Settings
from services.console.config import ConsoleSettings


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from services.console.app import create_app

    console = ConsoleSettings()
    logs.configure(settings.log_level)
    uvicorn.run(create_app(settings, console), host=host or console.host,
                port=port or console.port, log_level=settings.log_level.lower())
