"""The adapter registry: versions with their cards and gate verdicts; stewards promote (only
a version whose gate passed) and retire, always with a reason, recorded in
``adapter_decisions`` by :mod:`services.common.adapter_registry`, the code the fine-tuning
worker and the CLI use."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse

from services.common import adapter_registry as registry
from services.console.config import adapters_dir
from services.console.deps import CsrfDep, StateDep, StewardDep, ViewerDep, render

router = APIRouter()


@router.get("/adapters")
def adapters(request: Request, state: StateDep, user: ViewerDep, message: str = "") -> Response:
    return render(request, "adapters.html", versions=registry.list_versions(state.engine),
                  decisions=registry.decisions(state.engine, limit=50), message=message)


def _version(state: StateDep, name: str, version: int) -> registry.AdapterVersion:
    found = registry.get(state.engine, name, version)
    if found is None:
        raise HTTPException(404, f"no adapter {name}@v{version} in the registry")
    return found


@router.get("/adapters/{name}/v{version}")
def card(request: Request, state: StateDep, user: ViewerDep, name: str, version: int,
         message: str = "") -> Response:
    found = _version(state, name, version)
    history = [d for d in registry.decisions(state.engine, name) if d.version == version]
    return render(request, "adapter.html", v=found, history=history, message=message[:200])


def _done(name: str, version: int, message: str) -> RedirectResponse:
    return RedirectResponse(f"/adapters/{name}/v{version}?message={quote(message)}",
                            status.HTTP_303_SEE_OTHER)


@router.post("/adapters/{name}/v{version}/promote", dependencies=[CsrfDep])
def promote(state: StateDep, user: StewardDep, name: str, version: int,
            reason: Annotated[str, Form(min_length=3, max_length=2000)]) -> Response:
    found = _version(state, name, version)
    if found.status == "promoted":  # a repeated submit: nothing to do, nothing recorded twice
        return _done(name, version, "already promoted")
    try:
        registry.promote(state.engine, name, version, adapters_dir(state.settings),
                         actor=user.id, reason=reason, require_gate=True)
    except registry.RegistryError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _done(name, version, f"promoted by {user.id}")


@router.post("/adapters/{name}/v{version}/retire", dependencies=[CsrfDep])
def retire(state: StateDep, user: StewardDep, name: str, version: int,
           reason: Annotated[str, Form(min_length=3, max_length=2000)]) -> Response:
    found = _version(state, name, version)
    if found.status == "retired":
        return _done(name, version, "already retired")
    try:
        registry.retire(state.engine, name, version, adapters_dir(state.settings),
                        actor=user.id, reason=reason)
    except registry.RegistryError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _done(name, version, f"retired by {user.id}")
