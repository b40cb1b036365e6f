"""FastAPI dependencies as Annotated aliases, shared by the routers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from services.common import identity
from services.common.config import Settings
from services.common.rpc import ReplyClient
from services.gateway.config import GatewaySettings


@dataclass
class GatewayState:
    settings: Settings
    config: GatewaySettings
    authenticator: identity.Authenticator
    client: ReplyClient | None = None
    inflight: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(64))


@dataclass(frozen=True)
class Caller:
    """Who called, as proven by the credential; the credential itself travels on with the
    request so the input guardrail verifies it again instead of trusting the gateway's word."""

    identity: identity.Identity
    credential: str


def get_state(request: Request) -> GatewayState:
    return request.app.state.gateway


def get_caller(
    state: Annotated[GatewayState, Depends(get_state)],
    authorization: Annotated[str | None, Header()] = None,
) -> Caller:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer API key or token",
                            headers={"WWW-Authenticate": "Bearer"})
    credential = authorization[7:].strip()
    try:
        who = state.authenticator.verify(credential)
    except identity.Unauthenticated as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc),
                            headers={"WWW-Authenticate": "Bearer"}) from exc
    return Caller(who, credential)


StateDep = Annotated[GatewayState, Depends(get_state)]
CallerDep = Annotated[Caller, Depends(get_caller)]
