"""The adapter registry: versions with their cards and gate verdicts; stewards promote (only
a version whose gate passed) and retire, always with a reason, recorded in
``adapter_decisions`` by :mod:`services.common.adapter_registry`, the code the fine-tuning
worker and the CLI use. The fine-tuning jobs beside them (read from ``finetune_jobs``): who or
what queued each (a person, or the retraining policy with its reason) and how it ended
(promoted, refused by the gate with its verdict, left a candidate, failed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import text

from services.common import adapter_registry as registry
from services.console.config import adapters_dir
from services.console.deps import (
    ConsoleState,
    CsrfDep,
    StateDep,
    StewardDep,
    ViewerDep,
    render,
)

router = APIRouter()
_JOB_COLUMNS = (
    "job_id, adapter_name, method, status, coalesce(request->>'trigger', 'manual') AS trigger, "
    "request->>'reason' AS reason, request->>'requested_by' AS requested_by, "
    "request->'dataset'->>'snapshot_id' AS snapshot_id, adapter_version, error, "
    "result->'gate' AS gate, (result->>'promoted')::boolean AS promoted, created_at, "
    "finished_at")


@dataclass(frozen=True)
class JobView:
    """A fine-tuning job as the console shows it: who asked (a person or the retraining
    policy, and why) and how it ended (promoted, refused by the gate, left a candidate)."""

    job_id: str
    adapter_name: str
    method: str
    status: str
    trigger: str
    reason: str | None
    requested_by: str | None
    snapshot_id: str | None
    adapter_version: int | None
    error: str | None
    gate: dict[str, Any] | None
    promoted: bool | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def version_ref(self) -> str | None:
        return None if self.adapter_version is None else \
            f"{self.adapter_name}@v{self.adapter_version}"

    @property
    def outcome(self) -> str:
        """promoted | refused (the gate failed) | candidate (no gate run) | the status."""
        if self.status != "completed":
            return self.status
        if self.promoted:
            return "promoted"
        if self.gate and self.gate.get("checked"):
            return "refused"
        return "candidate"


def jobs(state: ConsoleState, limit: int = 30, adapter: str | None = None,
         job_id: str | None = None) -> list[JobView]:
    with state.engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT {_JOB_COLUMNS} FROM finetune_jobs "
            "WHERE (CAST(:a AS text) IS NULL OR adapter_name = :a) "
            "AND (CAST(:j AS text) IS NULL OR job_id = :j) "
            "ORDER BY created_at DESC LIMIT :n"), {"a": adapter, "j": job_id, "n": limit}).all()
    return [JobView(**row._mapping) for row in rows]


@router.get("/adapters")
def adapters(request: Request, state: StateDep, user: ViewerDep, message: str = "") -> Response:
    return render(request, "adapters.html", versions=registry.list_versions(state.engine),
                  decisions=registry.decisions(state.engine, limit=50), jobs=jobs(state),
                  message=message)


@router.get("/adapters/jobs/{job_id}")
def job(request: Request, state: StateDep, user: ViewerDep, job_id: str) -> Response:
    found = jobs(state, limit=1, job_id=job_id)
    if not found:
        raise HTTPException(404, f"no fine-tuning job {job_id}")
    return render(request, "job.html", j=found[0])


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
    trained_by = jobs(state, limit=1, job_id=found.job_id) if found.job_id else []
    return render(request, "adapter.html", v=found, history=history, message=message[:200],
                  job=trained_by[0] if trained_by else None)


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
