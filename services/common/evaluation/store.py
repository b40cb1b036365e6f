"""Evaluation runs and per-case results in Postgres (tables of migration 0004).

A result is written as soon as its case is scored, keyed by (run, case) and upserted, so a crash
loses at most the cases in flight and a resume (``completed_case_ids``) picks up from there.
JSON values are made strict before they are stored: NaN and infinities (which jsonb rejects)
become null, numpy scalars become plain numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.common.evaluation.models import CaseResult
from services.common.exceptions import CustomLLMError


class EvalStoreError(CustomLLMError):
    """A run that does not exist, or exists already."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    testset: str
    testset_hash: str
    config: dict[str, Any]
    status: str
    started_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None
    cases_total: int
    cases_done: int = 0
    cases_failed: int = 0


@dataclass(frozen=True)
class StoredResult:
    result: CaseResult
    metrics: dict[str, Any]


def jsonable(value: Any) -> Any:
    """Plain JSON types only; non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    if hasattr(value, "tolist"):  # numpy scalar or array
        return jsonable(value.tolist())
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), allow_nan=False, ensure_ascii=False)


_RUN_COLUMNS = (
    "r.run_id, r.testset, r.testset_hash, r.config, r.status, r.started_at, r.finished_at, "
    "r.summary, r.cases_total, "
    "(SELECT count(*) FROM eval_results e WHERE e.run_id = r.run_id) AS cases_done, "
    "(SELECT count(*) FROM eval_results e WHERE e.run_id = r.run_id "
    " AND e.result->>'status' = 'error') AS cases_failed"
)


def _run(row: Any) -> RunRecord:
    return RunRecord(run_id=row.run_id, testset=row.testset, testset_hash=row.testset_hash,
                     config=dict(row.config or {}), status=row.status,
                     started_at=row.started_at, finished_at=row.finished_at,
                     summary=row.summary, cases_total=row.cases_total,
                     cases_done=int(row.cases_done), cases_failed=int(row.cases_failed))


def create_run(engine: Engine, run_id: str, testset: str, testset_hash: str,
               config: dict[str, Any], cases_total: int) -> RunRecord:
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO eval_runs (run_id, testset, testset_hash, config, cases_total) "
                "VALUES (:run_id, :testset, :hash, CAST(:config AS jsonb), :total)"),
                {"run_id": run_id, "testset": testset, "hash": testset_hash,
                 "config": _dumps(config), "total": cases_total})
    except IntegrityError as exc:
        raise EvalStoreError(f"evaluation run {run_id!r} exists already") from exc
    run = get_run(engine, run_id)
    assert run is not None
    return run


def update_config(engine: Engine, run_id: str, patch: dict[str, Any]) -> None:
    """Merge ``patch`` into the run's config (top-level keys)."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE eval_runs SET config = config || CAST(:patch AS jsonb) "
                          "WHERE run_id = :run_id"), {"run_id": run_id, "patch": _dumps(patch)})


def mark_running(engine: Engine, run_id: str, cases_total: int) -> None:
    """A resumed run is running again; its summary is recomputed when it finishes."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE eval_runs SET status = 'running', finished_at = NULL, "
                          "cases_total = :total WHERE run_id = :run_id"),
                     {"run_id": run_id, "total": cases_total})


def record_result(engine: Engine, result: CaseResult, metrics: dict[str, Any]) -> None:
    """Insert or replace the result of one case (idempotent)."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO eval_results (run_id, case_id, result, metrics) "
            "VALUES (:run_id, :case_id, CAST(:result AS jsonb), CAST(:metrics AS jsonb)) "
            "ON CONFLICT (run_id, case_id) DO UPDATE SET result = EXCLUDED.result, "
            "metrics = EXCLUDED.metrics, created_at = now()"),
            {"run_id": result.run_id, "case_id": result.case_id,
             "result": _dumps(result.model_dump(mode="json")), "metrics": _dumps(metrics)})


def completed_case_ids(engine: Engine, run_id: str, include_errors: bool = False) -> set[str]:
    """Cases a resume can skip: every stored result except errors (timeouts and the like are
    worth another try), unless ``include_errors``."""
    sql = "SELECT case_id FROM eval_results WHERE run_id = :run_id"
    if not include_errors:
        sql += " AND result->>'status' IS DISTINCT FROM 'error'"
    with engine.connect() as conn:
        return {row[0] for row in conn.execute(text(sql), {"run_id": run_id})}


def load_results(engine: Engine, run_id: str) -> list[StoredResult]:
    """Every stored result of the run, ordered by case id (a stable order: the summary's
    bootstrap resamples by position, so the same results always give the same intervals).

    jsonb keeps no key order: the metrics dicts come back in jsonb's order, not score order.
    """
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT result, metrics FROM eval_results WHERE run_id = :r "
                                 "ORDER BY case_id"), {"r": run_id}).all()
    return [StoredResult(CaseResult.model_validate(row.result), dict(row.metrics or {}))
            for row in rows]


def finish_run(engine: Engine, run_id: str, summary: dict[str, Any],
               status: str = "completed") -> None:
    with engine.begin() as conn:
        updated = conn.execute(text(
            "UPDATE eval_runs SET status = :status, summary = CAST(:summary AS jsonb), "
            "finished_at = now() WHERE run_id = :run_id"),
            {"run_id": run_id, "status": status, "summary": _dumps(summary)})
    if updated.rowcount == 0:
        raise EvalStoreError(f"no evaluation run {run_id!r}")


def list_runs(engine: Engine, limit: int = 100) -> list[RunRecord]:
    """Newest first."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {_RUN_COLUMNS} FROM eval_runs r "
                                 "ORDER BY r.started_at DESC, r.run_id DESC LIMIT :limit"),
                            {"limit": limit}).all()
    return [_run(row) for row in rows]


def get_run(engine: Engine, run_id: str) -> RunRecord | None:
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_RUN_COLUMNS} FROM eval_runs r "
                                "WHERE r.run_id = :run_id"), {"run_id": run_id}).first()
    return _run(row) if row is not None else None


def require_run(engine: Engine, run_id: str) -> RunRecord:
    run = get_run(engine, run_id)
    if run is None:
        known = ", ".join(r.run_id for r in list_runs(engine, 5)) or "none"
        raise EvalStoreError(f"no evaluation run {run_id!r} (latest: {known})")
    return run
