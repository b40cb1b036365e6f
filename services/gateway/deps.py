"""FastAPI dependencies as Annotated aliases, shared by the routers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from services.common.config import Settings
from services.common.events import Principal
from services.common.rpc import ReplyClient
from services.gateway.auth import load_keys, principal_for


@dataclass
class GatewayState:
    settings: Settings
    client: ReplyClient | None = None
    inflight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(64))


def get_state(request: Request) -> GatewayState:
    return request.app.state.gateway


def get_principal(
    state: Annotated[GatewayState, Depends(get_state)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return principal_for(authorization, load_keys(state.settings.api_keys_file))


StateDep = Annotated[GatewayState, Depends(get_state)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
