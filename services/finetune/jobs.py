"""The job table: idempotent intake, claiming with ``SKIP LOCKED``, leases and heartbeats,
transitions with their events in a transactional outbox.

A transition and its lifecycle event are written in one transaction (the event into
``finetune_outbox``); :func:`pending_events` / :func:`mark_sent` relay the outbox to
finetune.events afterwards. A crash between the two re-sends the event on the next relay
instead of losing it (consumers see at-least-once events and keep the latest per job).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from services.common.events import FinetuneEvent, FinetuneRequest, FinetuneStatus
from services.finetune.handlers import (
    InvalidTransition,
    check_transition,
    claim_action,
    lost_worker_reason,
)


@dataclass(frozen=True)
class Job:
    job_id: str
    request: FinetuneRequest
    adapter_name: str
    status: str
    attempt: int
    worker_id: str | None
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    cancel_requested: bool
    adapter_version: int | None
    mlflow_run_id: str | None
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """A job a worker took: ``action`` is start, resume, fail or cancel (see
    :func:`handlers.claim_action`); for fail/cancel the job is already closed."""

    job: Job
    action: str


_COLUMNS = ("job_id, request, adapter_name, status, attempt, worker_id, progress, result, error, "
            "cancel_requested, adapter_version, mlflow_run_id, created_at, updated_at, "
            "heartbeat_at, lease_expires_at, finished_at")


def _job(row: Any) -> Job:
    data = row._mapping
    return Job(**{**data, "request": FinetuneRequest.model_validate(data["request"])})


def _event_json(event: FinetuneEvent) -> str:
    return json.dumps(event.to_dict())


def _outbox(conn: Connection, event: FinetuneEvent) -> None:
    conn.execute(text("INSERT INTO finetune_outbox (job_id, payload) "
                      "VALUES (:j, CAST(:p AS jsonb))"),
                 {"j": event.job_id, "p": _event_json(event)})


def insert_job(engine: Engine, request: FinetuneRequest, base_model: str) -> bool:
    """Queue a job once: False when the job id exists (a redelivered request)."""
    assert request.adapter_name is not None
    with engine.begin() as conn:
        inserted = conn.execute(text(
            "INSERT INTO finetune_jobs (job_id, request, adapter_name, base_model, method) "
            "VALUES (:j, CAST(:r AS jsonb), :a, :b, :m) ON CONFLICT (job_id) DO NOTHING "
            "RETURNING job_id"),
            {"j": request.job_id, "r": json.dumps(request.to_dict()), "a": request.adapter_name,
             "b": request.base_model or base_model, "m": request.method}).first()
        if inserted is not None:
            message = f"{request.method} job queued"
            if request.trigger == "auto":
                message += f" by the retraining policy: {request.reason or 'policy due'}"
            _outbox(conn, FinetuneEvent(job_id=request.job_id, status="queued",
                                        adapter_name=request.adapter_name,
                                        trigger=request.trigger or "manual",
                                        message=message[:2000]))
    return inserted is not None


def request_cancel(engine: Engine, job_id: str, reason: str | None = None) -> str | None:
    """Flag the job; a queued one is cancelled at once (it never starts), a running one stops
    at its next step. Returns the job's status afterwards (None: no such job)."""
    with engine.begin() as conn:
        row = conn.execute(text("SELECT status, adapter_name, attempt FROM finetune_jobs "
                                "WHERE job_id = :j FOR UPDATE"), {"j": job_id}).first()
        if row is None:
            return None
        if row.status in ("completed", "failed", "cancelled"):
            return str(row.status)
        conn.execute(text("UPDATE finetune_jobs SET cancel_requested = true, updated_at = now() "
                          "WHERE job_id = :j"), {"j": job_id})
        if row.status != "queued":
            return str(row.status)
        _close(conn, job_id, "cancelled", reason or "cancelled before it started",
               adapter_name=row.adapter_name, attempt=row.attempt)
        return "cancelled"


def claim_next(engine: Engine, worker_id: str, lease_s: float, max_attempts: int,
               ) -> Claim | None:
    """The oldest queued job, or a live one whose lease ran out; locked rows are skipped so
    several workers never take the same job."""
    with engine.begin() as conn:
        row = conn.execute(text(
            f"SELECT {_COLUMNS} FROM finetune_jobs j "
            "WHERE (status = 'queued' OR (status IN ('running', 'evaluating') "
            "AND lease_expires_at < now())) "
            # Its earlier events go out first, so finetune.events keeps each job's order.
            "AND NOT EXISTS (SELECT 1 FROM finetune_outbox o WHERE o.job_id = j.job_id) "
            "ORDER BY created_at LIMIT 1 FOR UPDATE OF j SKIP LOCKED")).first()
        if row is None:
            return None
        job = _job(row)
        action = claim_action(job.status, job.attempt, max_attempts, job.cancel_requested)
        if action == "cancel":
            _close(conn, job.job_id, "cancelled", "cancel requested",
                   adapter_name=job.adapter_name, attempt=job.attempt)
        elif action == "fail":
            _close(conn, job.job_id, "failed",
                   lost_worker_reason(job.worker_id, job.attempt, max_attempts),
                   adapter_name=job.adapter_name, attempt=job.attempt)
        else:
            conn.execute(text(
                "UPDATE finetune_jobs SET status = 'running', attempt = attempt + 1, "
                "worker_id = :w, heartbeat_at = now(), "
                "lease_expires_at = now() + make_interval(secs => :lease), "
                "started_at = coalesce(started_at, now()), updated_at = now() "
                "WHERE job_id = :j"), {"w": worker_id, "lease": lease_s, "j": job.job_id})
            message = ("started" if action == "start" else
                       f"resumed by {worker_id}: the previous worker "
                       f"{job.worker_id or 'unknown'} stopped heartbeating")
            _outbox(conn, FinetuneEvent(job_id=job.job_id, status="running",
                                        attempt=job.attempt + 1, worker_id=worker_id,
                                        adapter_name=job.adapter_name, message=message))
        return Claim(require(conn, job.job_id), action)


def heartbeat(engine: Engine, job_id: str, worker_id: str, attempt: int, lease_s: float,
              progress: dict[str, Any] | None = None) -> tuple[bool, bool]:
    """Renew the lease (and record progress). Returns (still ours, cancel requested): a worker
    that lost its job (lease taken over after a long stall) must stop working on it."""
    with engine.begin() as conn:
        row = conn.execute(text(
            "UPDATE finetune_jobs SET heartbeat_at = now(), "
            "lease_expires_at = now() + make_interval(secs => :lease), "
            "progress = CASE WHEN CAST(:p AS jsonb) IS NULL THEN progress "
            "ELSE CAST(:p AS jsonb) END, updated_at = now() "
            "WHERE job_id = :j AND worker_id = :w AND attempt = :a "
            "AND status IN ('running', 'evaluating') RETURNING cancel_requested"),
            {"lease": lease_s, "p": json.dumps(progress) if progress is not None else None,
             "j": job_id, "w": worker_id, "a": attempt}).first()
    if row is None:
        return False, False
    return True, bool(row.cancel_requested)


def release(engine: Engine, job_id: str, worker_id: str, attempt: int) -> None:
    """Give a job back (worker shutting down): its lease ends now, so the next worker resumes
    it at once instead of waiting for the lease to run out."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE finetune_jobs SET lease_expires_at = now(), updated_at = now() "
                          "WHERE job_id = :j AND worker_id = :w AND attempt = :a "
                          "AND status IN ('running', 'evaluating')"),
                     {"j": job_id, "w": worker_id, "a": attempt})


def transition(engine: Engine, job_id: str, worker_id: str, attempt: int,
               status: FinetuneStatus, event: FinetuneEvent, **fields: Any) -> None:
    """Move a job this worker owns, with its event in the outbox (one transaction).

    ``fields``: result (dict), error, adapter_version, mlflow_run_id, progress (dict).
    Raises :class:`InvalidTransition` when the job is no longer this worker's."""
    with engine.begin() as conn:
        row = conn.execute(text("SELECT status, worker_id, attempt FROM finetune_jobs "
                                "WHERE job_id = :j FOR UPDATE"), {"j": job_id}).first()
        if row is None or row.worker_id != worker_id or row.attempt != attempt:
            raise InvalidTransition(f"job {job_id} is no longer held by {worker_id} "
                                    f"(attempt {attempt})")
        check_transition(row.status, status)
        _update(conn, job_id, status, **fields)
        _outbox(conn, event)


def _update(conn: Connection, job_id: str, status: str, **fields: Any) -> None:
    sets = ["status = :s", "updated_at = now()"]
    params: dict[str, Any] = {"j": job_id, "s": status}
    for name in ("result", "progress"):
        if name in fields:
            sets.append(f"{name} = {name} || CAST(:{name} AS jsonb)")
            params[name] = json.dumps(fields[name])
    for name in ("error", "adapter_version", "mlflow_run_id"):
        if name in fields:
            sets.append(f"{name} = :{name}")
            params[name] = fields[name]
    if status in ("completed", "failed", "cancelled"):
        sets += ["finished_at = now()", "lease_expires_at = NULL"]
    conn.execute(text(f"UPDATE finetune_jobs SET {', '.join(sets)} WHERE job_id = :j"), params)


def _close(conn: Connection, job_id: str, status: FinetuneStatus, reason: str, *,
           adapter_name: str | None, attempt: int) -> None:
    _update(conn, job_id, status, error=reason)
    _outbox(conn, FinetuneEvent(job_id=job_id, status=status, attempt=attempt,
                                adapter_name=adapter_name,
                                error=reason if status == "failed" else None,
                                message=reason))


def set_result(engine: Engine, job_id: str, **result: Any) -> None:
    """Merge facts a resume needs (snapshot id, MLflow run) into the job's result."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE finetune_jobs SET result = result || CAST(:r AS jsonb), "
                          "updated_at = now() WHERE job_id = :j"),
                     {"r": json.dumps(result), "j": job_id})


def set_mlflow_run(engine: Engine, job_id: str, run_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE finetune_jobs SET mlflow_run_id = :r, updated_at = now() "
                          "WHERE job_id = :j"), {"r": run_id, "j": job_id})


def require(conn: Connection, job_id: str) -> Job:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM finetune_jobs WHERE job_id = :j"),
                       {"j": job_id}).first()
    if row is None:
        raise InvalidTransition(f"no job {job_id}")
    return _job(row)


def get_job(engine: Engine, job_id: str) -> Job | None:
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM finetune_jobs WHERE job_id = :j"),
                           {"j": job_id}).first()
    return _job(row) if row is not None else None


def list_jobs(engine: Engine, limit: int = 50, status: str | None = None) -> list[Job]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT {_COLUMNS} FROM finetune_jobs "
            "WHERE CAST(:s AS text) IS NULL OR status = :s "
            "ORDER BY created_at DESC LIMIT :n"), {"s": status, "n": limit}).all()
    return [_job(row) for row in rows]


# --- outbox relay -------------------------------------------------------------------------------

def pending_events(conn: Connection, limit: int = 100) -> list[tuple[int, str, dict[str, Any]]]:
    """(id, job id, payload) of unsent events, oldest first, locked for this relay."""
    rows = conn.execute(text(
        "SELECT id, job_id, payload FROM finetune_outbox ORDER BY id LIMIT :n "
        "FOR UPDATE SKIP LOCKED"), {"n": limit}).all()
    return [(int(r.id), str(r.job_id), dict(r.payload)) for r in rows]


def mark_sent(conn: Connection, ids: list[int]) -> None:
    conn.execute(text("DELETE FROM finetune_outbox WHERE id = ANY(:ids)"), {"ids": ids})


__all__ = ["Claim", "InvalidTransition", "Job", "claim_next", "get_job", "heartbeat",
           "insert_job", "list_jobs", "mark_sent", "pending_events", "release", "request_cancel",
           "require", "set_mlflow_run", "set_result", "transition"]
