"""What the recorder does with one record of each topic it reads. No Kafka here: the loop in
``app.py`` feeds records in and sends the refusals these functions raise to the DLQ."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine
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


@dataclass(frozen=True)
class Refusal:
    """A record of a batch that was not stored: its position in the batch and why."""

    index: int
    error: InvalidEvent


def record_pipeline(engine: Engine, records: Sequence[tuple[str, bytes]]) -> list[Refusal]:
    """Screened requests, drafts and guardrail decisions (``(topic, value)`` pairs) into the
    audit tables, in one transaction: one commit (one WAL flush) per batch instead of per
    record, which is what kept the recorder under the rate the query path writes at (a request
    is a dozen records). Each record is stored under its own savepoint, so one that the
    database refuses costs only itself; the database being down rolls the batch back and
    propagates (the loop exits and the batch is read again). These come from platform stages
    only (the broker's ACLs), so a malformed one is a bug to log, not an attack to
    dead-letter; the refusals say so to the caller."""
    refused: list[Refusal] = []
    request_ids: list[str] = []
    with engine.begin() as conn:
        for index, (topic, value) in enumerate(records):
            try:
                event = _parse(topic, value)
                with conn.begin_nested():
                    _store(conn, topic, event)
            except InvalidEvent as error:
                refused.append(Refusal(index, error))
                continue
            except OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bug on one record must not cost the rest
                log.exception("could not record a %s record", topic)
                refused.append(Refusal(index, InvalidEvent(
                    "processing_error", f"{type(exc).__name__}: {exc}")))
                continue
            request_ids.append(event.request_id)
    # An ungrounded answer becomes a candidate example once its pieces are all on record. Its
    # own transaction: a candidate that cannot be made never costs the audit records.
    with engine.connect() as conn:
        found = candidates.ungrounded(conn, list(dict.fromkeys(request_ids)))
    for request_id in found:
        _candidate(engine, candidates.from_grounding, request_id)
    return refused


def _parse(topic: str, value: bytes) -> RagRequest | RagReply | GuardrailEvent:
    payload = decode_json(value, MAX_BYTES, SCHEMAS[topic])
    if topic == t.RAG_SCREENED:
        return parse_model(RagRequest, payload)
    if topic == t.RAG_DRAFTS:
        return parse_model(RagReply, payload)
    return parse_model(GuardrailEvent, payload)


def _store(conn: Connection, topic: str, event: RagRequest | RagReply | GuardrailEvent) -> None:
    if isinstance(event, RagRequest):
        answer_audit.record_screened(conn, event)
    elif isinstance(event, RagReply):
        answer_audit.record_draft(conn, event)
    else:
        answer_audit.record_decision(conn, event)


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
