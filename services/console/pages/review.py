"""The review queue: SMEs approve, edit or reject supervision examples.

Decisions go through :mod:`services.common.supervision_review`, the rules
``customllm examples review`` uses, and land on the same ``sft_examples`` rows with the
reviewer's principal id. Each form carries the status the reviewer saw, so a double click or a
reload repeats nothing, and a decision someone else made meanwhile is shown, not overwritten.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import Row, text

from services.common import supervision_review as sr
from services.console.deps import ConsoleState, CsrfDep, SmeDep, StateDep, render

router = APIRouter()
_COLUMNS = ("example_id, messages, source, lineage, license, privacy_class, review_status, "
            "reviewer, reviewed_at, review_note, tags, created_at")


def _example(state: ConsoleState, example_id: str) -> Row | None:
    with state.engine.connect() as conn:
        return conn.execute(text(f"SELECT {_COLUMNS} FROM sft_examples WHERE example_id = :i"),
                            {"i": example_id}).first()


@router.get("/review")
def queue(request: Request, state: StateDep, user: SmeDep,
          status_: Annotated[str, Query(alias="status")] = "pending", source: str = "",
          page: int = Query(1, ge=1)) -> Response:
    where, params = [], {}
    if status_ in sr.STATUSES:
        where.append("review_status = :status")
        params["status"] = status_
    if source.strip():
        where.append("source = :source")
        params["source"] = source.strip()
    size = state.console.page_size
    params.update(limit=size + 1, offset=(page - 1) * size)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with state.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {_COLUMNS} FROM sft_examples {clause} "
                                 "ORDER BY created_at, example_id LIMIT :limit OFFSET :offset"),
                            params).all()
        counts = dict(conn.execute(text("SELECT review_status, count(*) FROM sft_examples "
                                        "GROUP BY review_status")).all())
    return render(request, "review.html", rows=rows[:size], more=len(rows) > size, page=page,
                  status=status_, source=source, counts=counts, statuses=sr.STATUSES,
                  message=None)


@router.post("/review/{example_id}", dependencies=[CsrfDep])
def decide(request: Request, state: StateDep, user: SmeDep, example_id: str,
           action: Annotated[Literal["approve", "reject", "edit"], Form()],
           seen_status: Annotated[str, Form()] = "pending",
           note: Annotated[str, Form(max_length=2000)] = "",
           answer: Annotated[str, Form(max_length=16000)] = "") -> Response:
    note_or_none = note.strip() or None
    try:
        if action == "edit":
            decision = sr.edit_answer(state.engine, example_id, answer, user.id, note_or_none,
                                      seen_status=seen_status)
            message = ("edit already saved" if decision.outcome == "unchanged" else
                       f"edited: new example {decision.replaced_by[:12]} approved, original "
                       "rejected")
        else:
            if action == "reject" and note_or_none is None:
                raise sr.SupervisionError("a rejection needs a note saying why")
            target = "approved" if action == "approve" else "rejected"
            decision = sr.decide(state.engine, example_id, target, user.id, note_or_none,
                                 seen_status=seen_status)
            message = (f"already {target} by you" if decision.outcome == "unchanged"
                       else f"{target} by {user.id}")
        code = 200
    except sr.SupervisionError as exc:
        message, code = str(exc), 409
    if request.headers.get("hx-request") != "true":
        if code != 200:
            return render(request, "error.html", status_code=code, code=code, message=message)
        return RedirectResponse(f"/review?status={seen_status}", status.HTTP_303_SEE_OTHER)
    # htmx swaps only 2xx answers: the row comes back with the outcome either way.
    return render(request, "review_row.html", row=_example(state, example_id), message=message,
                  ok=code == 200)
