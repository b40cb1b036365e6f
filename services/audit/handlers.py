"""What the recorder does with one record of each topic it reads. No Kafka here: the loop in
``app.py`` feeds records in and sends the refusals these functions raise to the DLQ."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from services.common import answer_audit, candidates, roles
from services.common import topics as t
from services.common.events import GuardrailEvent, RagReply, RagRequest
from services.common.exceptions import InvalidEvent
from services.common.feedback import FeedbackEvent, FeedbackRefused, check_may_rate
from services.common.identity import Authenticator, Unauthenticated
from services.common.messages import decode_json, parse_model

log = logging.getLogger(__name__)
MAX_BYTES = 8_388_608
SCHEMAS = {t.RAG_SCREENED: "rag-request.v1", t.RAG_DRAFTS: "rag-reply.v1",
           t.GUARDRAILS_EVENTS: "guardrail-event.v1", t.RAG_FEEDBACK: "feedback.v1"}


def record_pipeline(engine: Engine, topic: str, value: bytes) -> None:
    """A screened request, a draft or a guardrail decision into the audit tables. These come
    from platform stages only (the broker's ACLs), so a malformed one is a bug to log, not an
    attack to dead-letter; :class:`InvalidEvent` says so to the caller."""
    payload = decode_json(value, MAX_BYTES, SCHEMAS[topic])
    with engine.begin() as conn:
        if topic == t.RAG_SCREENED:
            event: RagRequest | RagReply | GuardrailEvent = parse_model(RagRequest, payload)
            answer_audit.record_screened(conn, event)
        elif topic == t.RAG_DRAFTS:
            event = parse_model(RagReply, payload)
            answer_audit.record_draft(conn, event)
        else:
            event = parse_model(GuardrailEvent, payload)
            answer_audit.record_decision(conn, event)
    # An ungrounded answer becomes a candidate example once its pieces are all on record. Its
    # own transaction: a candidate that cannot be made never costs the audit record.
    _candidate(engine, candidates.from_grounding, event.request_id)


def _candidate(engine: Engine, make: Callable[..., str | None], *args: object,
               **kwargs: object) -> None:
    """Make a candidate example; idempotent (content-hash ids), so a redelivered record that
    already made one makes nothing. The database being down propagates (the worker exits and
    resumes from its last commit); any other failure is logged, never lost silently, and does
    not stop the recorder."""
    try:
        with engine.begin() as conn:
            make(conn, *args, **kwargs)
    except OperationalError:
        raise
    except Exception:  # noqa: BLE001 - e.g. the PII detector failing on one text
        log.exception("no candidate example made for %s", args)


def record_feedback(engine: Engine, authenticator: Authenticator, value: bytes,
                    wait_s: float = 3.0, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Verify the credential, check the caller may rate this answer, store it. Returns False
    for a duplicate. Raises :class:`InvalidEvent` (for the DLQ) otherwise.

    The answer's audit record comes from other topics, which this consumer may read a moment
    later than the feedback; a missing record is waited for ``wait_s`` before giving up."""
    event = parse_model(FeedbackEvent, decode_json(value, MAX_BYTES, "feedback.v1"))
    try:
        who = authenticator.verify(event.credential)
    except Unauthenticated as exc:
        raise InvalidEvent("unauthenticated", str(exc)) from exc
    deadline = time.monotonic() + wait_s
    owner = answer_audit.request_owner(engine, event.request_id)
    while owner is None and time.monotonic() < deadline:
        sleep(0.5)
        owner = answer_audit.request_owner(engine, event.request_id)
    try:
        check_may_rate(who, owner)
    except FeedbackRefused as exc:
        # The DLQ schema's error types: an unknown request id is a processing error.
        error_type = "forbidden" if exc.code == "forbidden" else "processing_error"
        raise InvalidEvent(error_type, f"{exc.code}: {exc}") from exc
    role = roles.role_for(who.principal.groups)
    with engine.begin() as conn:
        stored = answer_audit.record_feedback(conn, event, who.principal.id, role)
    # A wrong answer, or a correction, is a candidate for the review queue. Also on a
    # redelivery (stored is False then): the candidate may be what the crash interrupted.
    _candidate(engine, candidates.from_feedback, event.request_id,
               feedback_id=event.feedback_id, principal_id=who.principal.id,
               rating=event.rating, correction=event.correction, comment=event.comment)
    return stored
