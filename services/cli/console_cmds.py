"""`customllm console`: serve the web console for stewards, SMEs and readers.

    customllm console                     # http://127.0.0.1:18090, log in with an API key
    customllm keys create sam --group stewards    # a key that logs in as a steward
"""

from __future__ import annotations

import typer

from services.common.config import get_settings


def console(
    host: str | None = typer.Option(None, help="Bind address (default CUSTOMLLM_CONSOLE_HOST, "
                                    "127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default CUSTOMLLM_CONSOLE_PORT, 18090)."),
) -> None:
    """Serve the web console: catalog, answer audits, review queue, guardrail decisions,
    evaluation runs and the adapter registry (roles from your key's groups)."""
    from services.console.server import serve

    serve(get_settings(), host, port)
