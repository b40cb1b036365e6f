"""``POST /v1/feedback``: a user's rating, correction or comment on one answer.

The route checks at the edge what it can answer at once (the credential, that the answer is on
record, that the caller asked it or is a steward: 401/404/403), then puts the feedback on
``rag.feedback`` with the caller's *credential*, like a question on ``rag.requests``. The audit
recorder verifies the credential again and stores the feedback with the answer's audit
record, so HTTP and Kafka clients go through one path and one set of checks.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from services.common import answer_audit
from services.common import topics as t
from services.common.db import make_engine
from services.common.feedback import (
    MAX_COMMENT_CHARS,
    MAX_CORRECTION_CHARS,
    FeedbackEvent,
    FeedbackRefused,
    check_may_rate,
)
from services.common.producer import flush, make_producer, send
from services.gateway.deps import CallerDep, StateDep

router = APIRouter(prefix="/v1", tags=["feedback"])
_lock = threading.Lock()


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=200)
    rating: Literal[-1, 0, 1] = Field(description="-1 wrong or unhelpful, 0 neutral, 1 good")
    correction: str | None = Field(default=None, max_length=MAX_CORRECTION_CHARS,
                                   description="What the answer should have said.")
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)
    feedback_id: str | None = Field(default=None, min_length=8, max_length=200,
                                    description="Set it to make retries idempotent.")


class FeedbackAccepted(BaseModel):
    feedback_id: str
    request_id: str
    status: Literal["accepted"] = "accepted"


class _Resources:
    """The route's own database engine and producer, made on first use (a gateway that never
    receives feedback opens neither)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.producer: object | None = None


def _resources(request: Request) -> _Resources:
    app_state = request.app.state
    with _lock:
        if not hasattr(app_state, "feedback"):
            app_state.feedback = _Resources()
        found: _Resources = app_state.feedback
        settings = app_state.gateway.settings
        if found.engine is None:
            found.engine = make_engine(settings.sqlalchemy_url, pool_size=2)
        if found.producer is None:
            found.producer = make_producer(settings.kafka_bootstrap, "customllm-gateway-feedback")
    return found


ResourcesDep = Annotated[_Resources, Depends(_resources)]


@router.post("/feedback", response_model=FeedbackAccepted,
             status_code=status.HTTP_202_ACCEPTED)
async def feedback(body: FeedbackBody, state: StateDep, caller: CallerDep,
                   resources: ResourcesDep) -> FeedbackAccepted:
    """202 once the broker has the feedback; the recorder stores it moments later."""
    assert resources.engine is not None
    owner = await asyncio.to_thread(answer_audit.request_owner, resources.engine,
                                    body.request_id)
    try:
        check_may_rate(caller.identity, owner)
    except FeedbackRefused as exc:
        code = (status.HTTP_404_NOT_FOUND if exc.code == "unknown_request"
                else status.HTTP_403_FORBIDDEN)
        raise HTTPException(code, str(exc)) from exc
    event = FeedbackEvent(request_id=body.request_id, rating=body.rating,
                          correction=(body.correction or "").strip() or None,
                          comment=(body.comment or "").strip() or None,
                          credential=caller.credential, channel="gateway",
                          **({"feedback_id": body.feedback_id} if body.feedback_id else {}))
    errors: list[str] = []
    send(resources.producer, t.RAG_FEEDBACK, event.request_id, event.to_json(), errors=errors)
    try:
        await asyncio.to_thread(flush, resources.producer, errors, 30.0)
    except Exception as exc:  # noqa: BLE001 - the broker did not take it: the client retries
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"feedback not accepted, retry: {exc}") from exc
    return FeedbackAccepted(feedback_id=event.feedback_id, request_id=event.request_id)


def close(app_state: object) -> None:
    """At shutdown: deliver what is queued, release the connections."""
    found: _Resources | None = getattr(app_state, "feedback", None)
    if found is None:
        return
    if found.producer is not None:
        found.producer.flush(10)
        found.producer = None
    if found.engine is not None:
        found.engine.dispose()
        found.engine = None
