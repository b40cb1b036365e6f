"""The TGI-compatible model server as its own service, separate from the public gateway.

These routes answer raw prompts with no retrieval, no access control and no guardrails, so
they never share the gateway's public port: the server binds to an internal address
(``CUSTOMLLM_MODEL_SERVER_HOST``, 127.0.0.1 by default) and every route except ``/health``
requires an API key from the same key file as the gateway. It is what the ``tgi`` backend or
any TGI client (``text_generation.Client(url, headers=...)``) talks to when the platform's own
small model should be served over HTTP; the default local stack does not need it (the rag
worker runs the model in process).

Run it with ``python -m services.model_server`` or ``customllm up --model-server``.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request, status

from services.common import identity
from services.common.config import Settings, get_settings
from services.model_server import engine_state, tgi_routes
from services.model_server.config import model_server_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    authenticator = functools.cache(lambda: identity.authenticator_from_settings(settings))

    def require_key(request: Request,
                    authorization: Annotated[str | None, Header()] = None) -> None:
        if request.url.path == "/health":
            return
        try:
            authenticator().verify(authorization)
        except identity.Unauthenticated as exc:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                                headers={"WWW-Authenticate": "Bearer"}) from exc

    # No interactive docs: FastAPI serves them outside the app's dependencies, so they would
    # be the one keyless door of an internal server (the TGI routes are documented by TGI).
    app = FastAPI(title="customllm model server (TGI-compatible)", version="0.1.0",
                  dependencies=[Depends(require_key)], docs_url=None, redoc_url=None,
                  openapi_url=None)
    engine_state.configure(settings)
    app.include_router(tgi_routes.router)
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    from services.common import logs, metrics, telemetry

    logs.configure(settings.log_level)
    telemetry.setup_tracing("model-server", settings)
    metrics.setup_metrics("model-server", settings)
    config = model_server_settings()
    uvicorn.run(create_app(settings), host=config.model_server_host,
                port=config.model_server_port, log_level=settings.log_level.lower())
