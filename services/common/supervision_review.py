"""Reviewing supervision examples (table ``sft_examples``, migration 0006): the one place
that decides who may move an example where, shared by ``customllm examples review`` and the
web console.

Allowed transitions are in :data:`TRANSITIONS`; a decision needs a reviewer's name and is
recorded on the row (reviewer, time, note). An *edit* keeps content-hash identity: the edited
conversation is a new example (approved by the editor, its lineage naming the original) and
the original is rejected with a note naming its replacement, in one transaction.

:func:`decide` is the idempotent form a web form needs: submitting the same decision twice
(a double click, a reload) changes nothing and is not an error, while a decision made by
someone else in between is reported instead of overwritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from services.common.exceptions import CustomLLMError

STATUSES = ("pending", "approved", "rejected")
# current → allowed next. Approvals can be withdrawn and rejections reconsidered; either can be
# reopened for another reviewer. Re-deciding the same way is refused: it would overwrite who
# decided and when with nothing new.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"approved", "rejected"}),
    "approved": frozenset({"rejected", "pending"}),
    "rejected": frozenset({"approved", "pending"}),
}


class SupervisionError(CustomLLMError):
    """An example or snapshot that does not exist, or a review that is not allowed."""


def content_hash(data: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace, UTF-8): an example's id."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_transition(current: str, new: str, reviewer: str | None) -> None:
    """Raise :class:`SupervisionError` unless ``current → new`` is allowed for ``reviewer``."""
    if new not in STATUSES:
        raise SupervisionError(f"unknown review status {new!r}; expected one of "
                               f"{', '.join(STATUSES)}")
    if new == current:
        raise SupervisionError(f"already {current}")
    if new not in TRANSITIONS[current]:
        raise SupervisionError(f"cannot go from {current} to {new}")
    if new != "pending" and not (reviewer or "").strip():
        raise SupervisionError(f"a reviewer's name is required to mark an example {new}")


NEEDS_CORRECTION = "needs-correction"


def check_approvable(status: str, tags: Sequence[str] | None) -> None:
    """An example made from an answer somebody flagged as wrong cannot be approved as it
    stands: it can be edited (the edit is approved) or rejected."""
    if status == "approved" and NEEDS_CORRECTION in (tags or ()):
        raise SupervisionError("this candidate repeats an answer flagged as wrong: edit the "
                               "answer (the edit is approved) or reject it")


def resolve(conn: Connection, given: str) -> str:
    """A full example id from an id or a unique prefix of at least 6 characters."""
    if len(given) < 6:
        raise SupervisionError(f"example id {given!r} is too short; give at least 6 characters")
    rows = conn.execute(text("SELECT example_id FROM sft_examples WHERE example_id LIKE :p "
                             "LIMIT 2"), {"p": given.replace("%", "").replace("_", r"\_") + "%"}
                        ).scalars().all()
    if not rows:
        raise SupervisionError(f"no example with id {given!r}")
    if len(rows) > 1:
        raise SupervisionError(f"example id prefix {given!r} is ambiguous")
    return rows[0]


def _set_status(conn: Connection, example_id: str, status: str, reviewer: str | None,
                note: str | None) -> None:
    conn.execute(text("""
        UPDATE sft_examples SET review_status = :status,
               reviewer = CASE WHEN :status = 'pending' THEN NULL ELSE :reviewer END,
               reviewed_at = CASE WHEN :status = 'pending' THEN NULL ELSE now() END,
               review_note = :note
        WHERE example_id = :id"""),
        {"status": status, "reviewer": reviewer, "note": note, "id": example_id})


def review(engine: Engine, example_ids: Sequence[str], status: str, reviewer: str | None,
           note: str | None = None) -> list[str]:
    """Move examples to ``status`` (all or none: one refused transition aborts the batch).
    Ids may be unique prefixes, as ``customllm examples list`` prints them."""
    done: list[str] = []
    with engine.begin() as conn:
        for given in example_ids:
            example_id = resolve(conn, given)
            current, tags = conn.execute(
                text("SELECT review_status, tags FROM sft_examples WHERE example_id = :id "
                     "FOR UPDATE"), {"id": example_id}).one()
            try:
                check_transition(current, status, reviewer)
                check_approvable(status, tags)
            except SupervisionError as exc:
                raise SupervisionError(f"example {example_id[:12]}: {exc}") from None
            _set_status(conn, example_id, status, reviewer, note)
            done.append(example_id)
    return done


Outcome = Literal["done", "unchanged"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    example_id: str
    status: str
    reviewer: str | None
    replaced_by: str | None = None


def _lock_row(conn: Connection, example_id: str) -> Any:
    row = conn.execute(text("SELECT example_id, messages, source, lineage, license, "
                            "privacy_class, review_status, reviewer, review_note, tags "
                            "FROM sft_examples WHERE example_id = :id FOR UPDATE"),
                       {"id": example_id}).first()
    if row is None:
        raise SupervisionError(f"no example with id {example_id!r}")
    return row


def decide(engine: Engine, example_id: str, status: Literal["approved", "rejected"],
           reviewer: str, note: str | None = None, *, seen_status: str = "pending") -> Decision:
    """Approve or reject one example as a form submits it.

    ``seen_status`` is the status the reviewer saw. If the example is already in ``status``
    by this reviewer, nothing changes (a repeated submit). If it moved since the reviewer saw
    it, the newer decision stands and :class:`SupervisionError` says who made it."""
    with engine.begin() as conn:
        row = _lock_row(conn, example_id)
        if row.review_status == status and row.reviewer == reviewer:
            return Decision("unchanged", example_id, status, reviewer)
        if row.review_status != seen_status:
            raise SupervisionError(f"example {example_id[:12]} is {row.review_status} by "
                                   f"{row.reviewer or 'nobody'} since you opened it; reload")
        check_transition(row.review_status, status, reviewer)
        check_approvable(status, row.tags)
        _set_status(conn, example_id, status, reviewer, note)
    return Decision("done", example_id, status, reviewer)


_INSERT_EDIT = text("""
    INSERT INTO sft_examples (example_id, messages, source, lineage, license, privacy_class,
                              review_status, reviewer, reviewed_at, review_note, tags)
    VALUES (:id, CAST(:messages AS jsonb), :source, CAST(:lineage AS jsonb), :license,
            :privacy, 'approved', :reviewer, now(), :note, :tags)
    ON CONFLICT (example_id) DO NOTHING""")


def edit_answer(engine: Engine, example_id: str, new_answer: str, reviewer: str,
                note: str | None = None, *, seen_status: str = "pending") -> Decision:
    """Replace the final assistant turn: the edited conversation becomes a new approved
    example (lineage ``edited_from``), the original is rejected naming it. Submitting the same
    edit again finds both rows as they were left and changes nothing."""
    answer = new_answer.strip()
    if not answer:
        raise SupervisionError("the edited answer is empty")
    with engine.begin() as conn:
        row = _lock_row(conn, example_id)
        messages = [dict(m) for m in row.messages]
        if not messages or messages[-1].get("role") != "assistant":
            raise SupervisionError("the example does not end with an assistant answer")
        messages[-1]["content"] = answer
        new_id = content_hash(messages)
        if new_id == example_id:
            raise SupervisionError("the edited answer is the same as the original")
        marker = f"edited into {new_id}"
        if row.review_status == "rejected" and (row.review_note or "").startswith(marker):
            return Decision("unchanged", example_id, "rejected", row.reviewer, new_id)
        if row.review_status != seen_status:
            raise SupervisionError(f"example {example_id[:12]} is {row.review_status} by "
                                   f"{row.reviewer or 'nobody'} since you opened it; reload")
        check_transition(row.review_status, "rejected", reviewer)
        lineage = {**(row.lineage or {}), "edited_from": example_id, "edited_by": reviewer}
        conn.execute(_INSERT_EDIT, {
            "id": new_id, "messages": json.dumps(messages), "source": row.source,
            "lineage": json.dumps(lineage, default=str), "license": row.license,
            "privacy": row.privacy_class, "reviewer": reviewer, "note": note,
            "tags": [t for t in (row.tags or []) if t != NEEDS_CORRECTION] + ["edited"]})
        _set_status(conn, example_id, "rejected", reviewer,
                    marker + (f": {note}" if note else ""))
    return Decision("done", example_id, "rejected", reviewer, new_id)
