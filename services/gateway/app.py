"""The gateway: the OpenAI-compatible API over the Kafka request/reply path.

Run it with ``python -m services.gateway`` or ``customllm serve``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.common import identity
from services.common.config import Settings, get_settings
from services.common.rpc import ReplyClient
from services.gateway import feedback_routes, openai_routes
from services.gateway.config import GatewaySettings, gateway_settings
from services.gateway.deps import GatewayState


def create_app(settings: Settings | None = None,
               config: GatewaySettings | None = None) -> FastAPI:
    """The public edge: OpenAI-compatible routes only. The TGI-compatible model routes live in
    their own service (services/model_server) on an internal port, so this process never
    loads a model or imports torch."""
    settings = settings or get_settings()
    config = config or gateway_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: GatewayState = app.state.gateway
        state.client = await asyncio.to_thread(ReplyClient, settings.kafka_bootstrap,
                                               client_id="customllm-gateway")
        try:
            yield
        finally:
            client, state.client = state.client, None
            await asyncio.to_thread(client.close)
            await asyncio.to_thread(feedback_routes.close, app.state)

    app = FastAPI(title="customllm gateway", version="0.1.0", lifespan=lifespan)
    app.state.gateway = GatewayState(
        settings=settings, config=config,
        authenticator=identity.authenticator_from_settings(settings),
        inflight=asyncio.Semaphore(config.gateway_max_inflight))
    app.include_router(openai_routes.router)
    app.include_router(feedback_routes.router)
    app.middleware("http")(body_limit(config.gateway_max_body_bytes))

    @app.get("/healthz", tags=["ops"])
    def healthz(response: Response) -> dict[str, str]:
        """503 until the reply client is connected, so readiness probes wait for it."""
        if app.state.gateway.client is None:
            response.status_code = 503
            return {"status": "starting"}
        return {"status": "ok"}

    return app


def body_limit(max_bytes: int) -> Callable[..., Awaitable[Response]]:
    """413 before a large body is read: the declared length is checked first, and a chunked
    body is cut off as soon as it passes the limit."""

    async def limit(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return _too_large(max_bytes)
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    return _too_large(max_bytes)
            request._body = body  # Starlette re-reads the cached body in the route
        return await call_next(request)

    return limit


def _too_large(max_bytes: int) -> Response:
    return JSONResponse({"detail": f"request body larger than {max_bytes} bytes"},
                        status_code=413)
