"""Users' feedback on answers (topic ``rag.feedback``): the event and who may leave it.

The event carries the caller's *credential*, never a principal: the recorder that stores it
verifies the credential and derives who gave the feedback, exactly as the input guardrail
does for questions (docs/security.md). A ``principal`` field written by a client is not even
accepted by the schema. Only the principal who asked, or a steward, may rate an answer: a
rating is evidence that can turn an answer into a training example, so it must come from
someone who saw the answer or is accountable for the data.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import ClassVar

from pydantic import Field

from services.common.events import Event, utc_now
from services.common.identity import Identity
from services.common.roles import at_least, role_for

MAX_CORRECTION_CHARS = 8000
MAX_COMMENT_CHARS = 2000
RATINGS = (-1, 0, 1)  # bad, neutral, good


class FeedbackEvent(Event):
    """One piece of feedback, keyed by ``request_id``; ``feedback_id`` makes it idempotent
    (a retried POST or a redelivered record is stored once)."""

    schema_name: str = Field(default="feedback.v1", exclude=True, repr=False)
    feedback_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    request_id: str = Field(min_length=1, max_length=200)
    rating: int = Field(ge=-1, le=1)
    correction: str | None = Field(default=None, max_length=MAX_CORRECTION_CHARS)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)
    credential: str | None = Field(default=None, repr=False)
    channel: str = "kafka"
    created_at: datetime = Field(default_factory=utc_now)
    omit_none: ClassVar[bool] = True


class FeedbackRefused(Exception):
    """Why a verified caller may not leave this feedback: ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_may_rate(who: Identity, asked_by: str | None) -> None:
    """Raise :class:`FeedbackRefused` unless ``who`` asked the question or is a steward.
    ``asked_by`` is None when no audit record of the request exists (yet)."""
    if asked_by is None:
        raise FeedbackRefused("unknown_request", "no answer with this request id is on record")
    if who.principal.id == asked_by:
        return
    if at_least(role_for(who.principal.groups), "steward"):
        return
    raise FeedbackRefused("forbidden", "only the principal who asked, or a steward, may leave "
                          "feedback on this answer")
