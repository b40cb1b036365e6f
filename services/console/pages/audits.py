"""An answer's audit: the question, the chunks it was answered from (with their document
versions), template, model and adapter, every guardrail decision, cost, trace and feedback.

Stewards see every answer; everyone else sees the answers to their own questions.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import text

from services.console.config import trace_link
from services.console.deps import StateDep, ViewerDep, render

router = APIRouter()


@router.get("/audits")
def audits(request: Request, state: StateDep, user: ViewerDep, q: str = "",
           principal: str = "", adapter: str = "", feedback: str = "",
           page: int = Query(1, ge=1)) -> Response:
    where, params = ["TRUE"], {}
    if not user.can("steward"):
        where.append("a.principal_id = :me")
        params["me"] = user.id
    elif principal.strip():
        where.append("a.principal_id = :principal")
        params["principal"] = principal.strip()
    if q.strip():
        where.append("(a.question ILIKE :q OR a.request_id ILIKE :q)")
        params["q"] = f"%{q.strip()}%"
    if adapter.strip():
        where.append("a.adapter = :adapter")
        params["adapter"] = adapter.strip()
    if feedback == "negative":
        where.append("EXISTS (SELECT 1 FROM answer_feedback f WHERE f.request_id = a.request_id "
                     "AND (f.rating < 0 OR f.correction IS NOT NULL))")
    size = state.console.page_size
    params.update(limit=size + 1, offset=(page - 1) * size)
    with state.engine.connect() as conn:
        rows = conn.execute(text(f"""
            SELECT a.request_id, a.principal_id, a.question, a.status, a.adapter,
                   a.adapter_version, a.template_version, a.created_at,
                   (SELECT count(*) FROM guardrail_decisions g
                    WHERE g.request_id = a.request_id AND g.triggered) AS triggered,
                   (SELECT min(f.rating) FROM answer_feedback f
                    WHERE f.request_id = a.request_id) AS worst_rating
            FROM answer_audit a WHERE {' AND '.join(where)}
            ORDER BY a.created_at DESC LIMIT :limit OFFSET :offset"""), params).all()
    return render(request, "audits.html", rows=rows[:size], more=len(rows) > size, page=page,
                  q=q, principal=principal, adapter=adapter, feedback=feedback)


@router.get("/audits/{request_id}")
def audit(request: Request, state: StateDep, user: ViewerDep, request_id: str) -> Response:
    with state.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM answer_audit WHERE request_id = :r"),
                           {"r": request_id}).first()
        if row is None:
            raise HTTPException(404, f"no audit record for request {request_id!r}")
        if row.principal_id != user.id and not user.can("steward"):
            raise HTTPException(403, "only the principal who asked, or a steward, may see "
                                "this answer's audit")
        decisions = conn.execute(text(
            "SELECT stage, check_name, action, triggered, score, reason, policy_version, at "
            "FROM guardrail_decisions WHERE request_id = :r ORDER BY at, stage, check_name"),
            {"r": request_id}).all()
        feedback = conn.execute(text(
            "SELECT feedback_id, principal_id, role, rating, correction, comment, channel, "
            "created_at FROM answer_feedback WHERE request_id = :r ORDER BY created_at"),
            {"r": request_id}).all()
    usage: dict[str, Any] = row.usage or {}
    return render(request, "audit.html", a=row, decisions=decisions, feedback=feedback,
                  usage=usage, trace=trace_link(state.console, state.settings, row.trace_id))
