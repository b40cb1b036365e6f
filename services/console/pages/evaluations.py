"""Evaluation runs: their metrics with confidence intervals, the charts the HTML report draws,
and the verdict of every promotion gate that compared the run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import text

from services.common.evaluation import plots
from services.common.evaluation import store as eval_store
from services.console.deps import StateDep, ViewerDep, render

router = APIRouter()
HEADLINE = ("exact_match", "f1", "faithfulness", "citation_precision", "refusal_accuracy")


def _gates(state: StateDep, run_id: str | None = None) -> list[Any]:
    """Adapter versions whose gate used a run (as candidate or baseline)."""
    with state.engine.connect() as conn:
        return conn.execute(text(
            "SELECT name, version, status, gate FROM adapters WHERE gate <> '{}'::jsonb AND "
            "(CAST(:r AS text) IS NULL OR gate->>'candidate_run' = :r "
            "OR gate->>'baseline_run' = :r) ORDER BY created_at DESC"), {"r": run_id}).all()


@router.get("/evaluations")
def runs(request: Request, state: StateDep, user: ViewerDep) -> Response:
    records = eval_store.list_runs(state.engine, limit=200)
    verdicts: dict[str, list[Any]] = {}
    for gate_row in _gates(state):
        for key in ("candidate_run", "baseline_run"):
            run_id = (gate_row.gate or {}).get(key)
            if run_id:
                verdicts.setdefault(run_id, []).append(gate_row)
    return render(request, "evaluations.html", runs=records, verdicts=verdicts,
                  headline=HEADLINE)


@router.get("/evaluations/{run_id}")
def run(request: Request, state: StateDep, user: ViewerDep, run_id: str) -> Response:
    record = eval_store.get_run(state.engine, run_id)
    if record is None:
        raise HTTPException(404, f"no evaluation run {run_id!r}")
    summary: dict[str, Any] = record.summary or {}
    return render(request, "evaluation.html", run=record, summary=summary,
                  metrics=summary.get("metrics") or {}, latency=summary.get("latency") or {},
                  gates=_gates(state, run_id))


@router.get("/evaluations/{run_id}/metrics.png")
def metrics_chart(state: StateDep, user: ViewerDep, run_id: str) -> Response:
    record = eval_store.get_run(state.engine, run_id)
    metrics = ((record.summary or {}).get("metrics") if record else None) or {}
    png = plots.metric_bars(metrics) if metrics else None
    if png is None:
        raise HTTPException(404, "nothing to draw for this run")
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=60"})
