"""``POST /v1/feedback``: a user's rating, correction or comment on one answer.

The route checks at the edge what it can check without the database (the credential: 401; the
body: 422), then puts the feedback on ``rag.feedback`` with the caller's *credential*, like a
question on ``rag.requests``, and answers 202 once the broker has it. The gateway stays off
the database (docs/security.md), so whether the caller may rate this answer (asked it, or is a
steward) is decided by the audit recorder, which verifies the credential again, stores the
feedback with the answer's audit record or dead-letters it with the reason. HTTP and Kafka
clients go through one path and one set of checks.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Literal

from confluent_kafka import Producer
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from services.common import topics as t
from services.common.feedback import MAX_COMMENT_CHARS, MAX_CORRECTION_CHARS, FeedbackEvent
from services.common.producer import flush, make_producer, send
from services.gateway.deps import CallerDep

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


class _Producer:
    """The route's own producer, made on first use (a gateway that never receives feedback
    opens none)."""

    def __init__(self) -> None:
        self.producer: Producer | None = None


def _producer(request: Request) -> Producer:
    app_state = request.app.state
    with _lock:
        if not hasattr(app_state, "feedback"):
            app_state.feedback = _Producer()
        holder: _Producer = app_state.feedback
        if holder.producer is None:
            holder.producer = make_producer(app_state.gateway.settings.kafka_bootstrap,
                                            "customllm-gateway-feedback")
        return holder.producer


ProducerDep = Annotated[Producer, Depends(_producer)]


@router.post("/feedback", response_model=FeedbackAccepted,
             status_code=status.HTTP_202_ACCEPTED)
async def feedback(body: FeedbackBody, caller: CallerDep,
                   producer: ProducerDep) -> FeedbackAccepted:
    """202 once the broker has the feedback; the recorder stores it (or dead-letters it with
    the reason) moments later."""
    event = FeedbackEvent(request_id=body.request_id, rating=body.rating,
                          correction=(body.correction or "").strip() or None,
                          comment=(body.comment or "").strip() or None,
                          credential=caller.credential, channel="gateway",
                          **({"feedback_id": body.feedback_id} if body.feedback_id else {}))
    errors: list[str] = []
    send(producer, t.RAG_FEEDBACK, event.request_id, event.to_json(), errors=errors)
    try:
        await asyncio.to_thread(flush, producer, errors, 30.0)
    except Exception as exc:  # noqa: BLE001 - the broker did not take it: the client retries
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"feedback not accepted, retry: {exc}") from exc
    return FeedbackAccepted(feedback_id=event.feedback_id, request_id=event.request_id)


def close(app_state: object) -> None:
    """At shutdown: deliver what is queued."""
    holder: _Producer | None = getattr(app_state, "feedback", None)
    if holder is not None and holder.producer is not None:
        holder.producer.flush(10)
        holder.producer = None
