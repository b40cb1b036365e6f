"""The gateway: OpenAI-compatible API over the Kafka request/reply path, and (for the local
engine) a TGI-compatible model server.

Run it with ``python -m services.gateway`` or ``customllm serve``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response

from services.common.config import Settings, get_settings
from services.common.rpc import ReplyClient
from services.gateway import openai_routes
from services.gateway.deps import GatewayState


def create_app(settings: Settings | None = None, with_model_server: bool = True) -> FastAPI:
    settings = settings or get_settings()

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

    app = FastAPI(title="customllm gateway", version="0.1.0", lifespan=lifespan)
    app.state.gateway = GatewayState(settings=settings,
                                     inflight=asyncio.Semaphore(settings.gateway_max_inflight))
    app.include_router(openai_routes.router)
    if with_model_server:
        from services.gateway import engine_state, tgi_routes

        engine_state.configure(settings)
        app.include_router(tgi_routes.router)

    @app.get("/healthz", tags=["ops"])
    def healthz(response: Response) -> dict[str, str]:
        """503 until the reply client is connected, so readiness probes wait for it."""
        if app.state.gateway.client is None:
            response.status_code = 503
            return {"status": "starting"}
        return {"status": "ok"}

    return app
