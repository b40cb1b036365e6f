"""Guardrail decisions, filterable by check, action, stage, principal, request and time,
with the counts per check and action over the same filter (stewards only: reasons quote
what was asked)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import text

from services.console.deps import StateDep, StewardDep, render

router = APIRouter()
STAGES = ("input", "output", "documents")


@router.get("/guardrails")
def decisions(request: Request, state: StateDep, user: StewardDep, check: str = "",
              action: str = "", stage: str = "", triggered: str = "", principal: str = "",
              request_id: str = "", hours: int = Query(24 * 7, ge=1, le=24 * 365),
              page: int = Query(1, ge=1)) -> Response:
    where, params = ["at >= now() - make_interval(hours => :hours)"], {"hours": hours}
    for column, value in (("check_name", check), ("action", action), ("stage", stage),
                          ("principal_id", principal), ("request_id", request_id)):
        if value.strip():
            where.append(f"{column} = :{column}")
            params[column] = value.strip()
    if triggered in ("yes", "no"):
        where.append("triggered = :triggered")
        params["triggered"] = triggered == "yes"
    clause = " AND ".join(where)
    size = state.console.page_size
    with state.engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT event_id, request_id, stage, check_name, action, triggered, score, reason, "
            f"policy_version, principal_id, domain, at FROM guardrail_decisions WHERE {clause} "
            "ORDER BY at DESC, event_id LIMIT :limit OFFSET :offset"),
            {**params, "limit": size + 1, "offset": (page - 1) * size}).all()
        counts = conn.execute(text(
            f"SELECT check_name, action, count(*) AS n, count(*) FILTER (WHERE triggered) AS hit "
            f"FROM guardrail_decisions WHERE {clause} GROUP BY check_name, action "
            "ORDER BY check_name, action"), params).all()
        checks = conn.execute(text("SELECT DISTINCT check_name FROM guardrail_decisions "
                                   "ORDER BY 1")).scalars().all()
        actions = conn.execute(text("SELECT DISTINCT action FROM guardrail_decisions "
                                    "ORDER BY 1")).scalars().all()
    return render(request, "guardrails.html", rows=rows[:size], more=len(rows) > size,
                  page=page, counts=counts, checks=checks, actions=actions, stages=STAGES,
                  f={"check": check, "action": action, "stage": stage, "triggered": triggered,
                     "principal": principal, "request_id": request_id, "hours": hours})
