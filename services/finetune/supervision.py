"""The supervision set in Postgres (migration 0006): import, review, snapshots.

* **Examples** are keyed by the content hash of their messages: re-importing a file, or the same
  system answer, adds nothing (``ON CONFLICT DO NOTHING``), and the first import's lineage,
  review and metadata are kept.
* **Review**: every example starts ``pending``, unless the importer vouches for the file
  (``approve=True``, recorded with the reviewer's name). Only ``approved`` examples train.
  Allowed transitions are in :data:`TRANSITIONS`; a decision needs a reviewer's name.
* **Snapshots** freeze the approved examples matching a filter, PII-scrubbed
  (:mod:`services.common.pii_scrub`), in a fixed order (by example id), with their data card.
  The snapshot id is the content hash of those scrubbed conversations, so the same data gives
  the same id, and creating it twice returns the stored one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.events import PrivacyClass
from services.common.pii_scrub import DEFAULT_POLICY, ScrubPolicy, ScrubStats, scrub_messages

# Review rules live in services.common (the CLI and the web console share them); re-exported
# here for the callers that know them by this module.
from services.common.supervision_review import (  # noqa: F401
    STATUSES,
    TRANSITIONS,
    SupervisionError,
    check_transition,
    review,
)
from services.common.supervision_review import resolve as _resolve
from services.finetune.datacard import CardRow, build_card, card_markdown, snapshot_id_for
from services.finetune.examples import ChatExample, ParsedLine

PRIVACY_ORDER: tuple[str, ...] = get_args(PrivacyClass)  # public < internal < ... < restricted
@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    n_examples: int
    card: dict[str, Any]
    card_markdown: str


@dataclass(frozen=True)
class StoredExample:
    example_id: str
    messages: list[dict[str, str]]
    source: str
    lineage: dict[str, Any]
    license: str | None
    privacy_class: str
    review_status: str
    reviewer: str | None
    reviewed_at: datetime | None
    review_note: str | None
    tags: list[str]
    created_at: datetime

    @property
    def example(self) -> ChatExample:
        return ChatExample(messages=self.messages)


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.added) + len(self.existing)


def check_privacy(value: str) -> str:
    if value not in PRIVACY_ORDER:
        raise SupervisionError(f"unknown privacy class {value!r}; expected one of "
                               f"{', '.join(PRIVACY_ORDER)}")
    return value


# --- writing ------------------------------------------------------------------------------

_INSERT = text("""
    INSERT INTO sft_examples (example_id, messages, source, lineage, license, privacy_class,
                              review_status, reviewer, reviewed_at, review_note, tags)
    VALUES (:example_id, CAST(:messages AS jsonb), :source, CAST(:lineage AS jsonb), :license,
            :privacy_class, :review_status, :reviewer,
            CASE WHEN :review_status = 'pending' THEN NULL ELSE now() END, :review_note, :tags)
    ON CONFLICT (example_id) DO NOTHING
    RETURNING example_id
""")


def add_example(engine: Engine, example: ChatExample, *, source: str,
                lineage: Mapping[str, Any] | None = None, license: str | None = None,  # noqa: A002
                privacy_class: str = "internal", tags: Sequence[str] = (),
                approved_by: str | None = None, note: str | None = None) -> bool:
    """Insert one example; False when it was there already (nothing is changed then)."""
    report = import_examples(engine, [ParsedLine(0, example, {})], source=source,
                             license=license, privacy_class=privacy_class, tags=tags,
                             approved_by=approved_by, note=note, lineage=lineage)
    return bool(report.added)


def import_examples(engine: Engine, lines: Iterable[ParsedLine], *, source: str,
                    license: str | None = None, privacy_class: str = "internal",  # noqa: A002
                    tags: Sequence[str] = (), approved_by: str | None = None,
                    note: str | None = None, file: str | None = None,
                    lineage: Mapping[str, Any] | None = None) -> ImportReport:
    """Insert parsed lines in one transaction. A line's own ``source``/``license``/
    ``privacy_class``/``tags``/``lineage`` keys override the defaults given here.
    ``approved_by`` approves them on import (the importer vouches for the file)."""
    report = ImportReport()
    status = "approved" if approved_by else "pending"
    with engine.begin() as conn:
        for parsed in lines:
            meta = parsed.meta
            row_lineage: dict[str, Any] = dict(lineage or {})
            if file is not None:
                row_lineage.update(file=file, line=parsed.line)
            if isinstance(meta.get("lineage"), dict):
                row_lineage.update(meta["lineage"])
            if "id" in meta:
                row_lineage["external_id"] = str(meta["id"])
            row_tags = list(dict.fromkeys([*tags, *_tags(meta.get("tags"))]))
            example_id = parsed.example.example_id
            inserted = conn.execute(_INSERT, {
                "example_id": example_id, "messages": json.dumps(parsed.example.messages),
                "source": str(meta.get("source") or source),
                "lineage": json.dumps(row_lineage, default=str),
                "license": meta.get("license", license),
                "privacy_class": check_privacy(str(meta.get("privacy_class") or privacy_class)),
                "review_status": status, "reviewer": approved_by,
                "review_note": note if approved_by else None, "tags": row_tags,
            }).scalar_one_or_none()
            (report.added if inserted else report.existing).append(example_id)
    return report


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


# --- reading ------------------------------------------------------------------------------

_COLUMNS = ("example_id, messages, source, lineage, license, privacy_class, review_status, "
            "reviewer, reviewed_at, review_note, tags, created_at")


def _stored(row: Any) -> StoredExample:
    return StoredExample(*row[:10], tags=list(row[10] or []), created_at=row[11])


def list_examples(engine: Engine, *, status: str | None = None, source: str | None = None,
                  limit: int | None = None, offset: int = 0) -> list[StoredExample]:
    """Oldest first (review order)."""
    where, params = [], {}
    if status is not None:
        if status not in STATUSES:
            raise SupervisionError(f"unknown review status {status!r}")
        where.append("review_status = :status")
        params["status"] = status
    if source is not None:
        where.append("source = :source")
        params["source"] = source
    sql = f"SELECT {_COLUMNS} FROM sft_examples"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at, example_id"
    if limit is not None:
        sql += " LIMIT :limit OFFSET :offset"
        params.update(limit=limit, offset=offset)
    with engine.connect() as conn:
        return [_stored(r) for r in conn.execute(text(sql), params)]


def get_example(engine: Engine, example_id: str) -> StoredExample:
    with engine.connect() as conn:
        resolved = _resolve(conn, example_id)
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM sft_examples WHERE example_id = :id"),
                           {"id": resolved}).one()
    return _stored(row)


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT review_status, count(*) FROM sft_examples "
                                 "GROUP BY review_status")).all()
    found = {status: 0 for status in STATUSES}
    found.update({status: int(n) for status, n in rows})
    return found


# --- snapshots ----------------------------------------------------------------------------

def snapshot_filter(sources: Sequence[str] = (), tags: Sequence[str] = (),
                    max_privacy: str | None = None) -> dict[str, Any]:
    if max_privacy is not None:
        check_privacy(max_privacy)
    return {"sources": sorted(set(sources)), "tags": sorted(set(tags)),
            "max_privacy": max_privacy}


def _approved(conn: Any, flt: Mapping[str, Any]) -> list[StoredExample]:
    where = ["review_status = 'approved'"]
    params: dict[str, Any] = {}
    if flt["sources"]:
        where.append("source = ANY(:sources)")
        params["sources"] = list(flt["sources"])
    if flt["tags"]:
        where.append("tags && CAST(:tags AS text[])")  # any of the tags
        params["tags"] = list(flt["tags"])
    if flt["max_privacy"]:
        allowed = PRIVACY_ORDER[:PRIVACY_ORDER.index(flt["max_privacy"]) + 1]
        where.append("privacy_class = ANY(:privacy)")
        params["privacy"] = list(allowed)
    sql = f"SELECT {_COLUMNS} FROM sft_examples WHERE {' AND '.join(where)} ORDER BY example_id"
    return [_stored(r) for r in conn.execute(text(sql), params)]


def create_snapshot(engine: Engine, *, sources: Sequence[str] = (), tags: Sequence[str] = (),
                    max_privacy: str | None = None,
                    policy: ScrubPolicy = DEFAULT_POLICY) -> Snapshot:
    """Freeze the approved examples matching the filter, PII-scrubbed, with their data card."""
    flt = snapshot_filter(sources, tags, max_privacy)
    with engine.connect() as conn:
        stored = _approved(conn, flt)
    if not stored:
        raise SupervisionError(f"no approved examples match {flt}; review some first "
                               "(customllm examples review)")
    stats = ScrubStats()
    rows = [CardRow(s.example_id, scrub_messages(s.messages, s.privacy_class, stats, policy),
                    s.source, s.license, s.privacy_class, s.reviewer, s.tags) for s in stored]
    snapshot_id = snapshot_id_for(rows)
    card = build_card(snapshot_id, rows, filter=flt, pii=stats.as_dict(),
                      pii_policy=policy.describe())
    markdown = card_markdown(card)
    with engine.begin() as conn:
        inserted = conn.execute(text("""
            INSERT INTO sft_snapshots (snapshot_id, filter, n_examples, card, card_markdown)
            VALUES (:id, CAST(:filter AS jsonb), :n, CAST(:card AS jsonb), :md)
            ON CONFLICT (snapshot_id) DO NOTHING RETURNING snapshot_id"""),
            {"id": snapshot_id, "filter": json.dumps(flt), "n": len(rows),
             "card": json.dumps(card), "md": markdown}).scalar_one_or_none()
        if inserted:
            conn.execute(text("""
                INSERT INTO sft_snapshot_examples (snapshot_id, position, example_id, messages)
                VALUES (:sid, :pos, :eid, CAST(:messages AS jsonb))"""),
                [{"sid": snapshot_id, "pos": i, "eid": row.example_id,
                  "messages": json.dumps([dict(m) for m in row.messages])}
                 for i, row in enumerate(rows)])
    if not inserted:
        return get_snapshot(engine, snapshot_id)
    return Snapshot(snapshot_id, len(rows), card, markdown)


def get_snapshot(engine: Engine, snapshot_id: str) -> Snapshot:
    """The snapshot by id or unique prefix (at least 8 characters)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT snapshot_id, n_examples, card, card_markdown FROM sft_snapshots "
            "WHERE snapshot_id LIKE :p LIMIT 2"),
            {"p": snapshot_id.replace("%", "").replace("_", r"\_") + "%"}).all()
    if len(snapshot_id) < 8 or not rows:
        raise SupervisionError(f"no snapshot with id {snapshot_id!r}")
    if len(rows) > 1:
        raise SupervisionError(f"snapshot id prefix {snapshot_id!r} is ambiguous")
    sid, n, card, markdown = rows[0]
    return Snapshot(sid, int(n), dict(card), markdown)


def load_snapshot(engine: Engine, snapshot_id: str) -> tuple[Snapshot, list[ChatExample]]:
    """The snapshot and its frozen (scrubbed) examples, in snapshot order."""
    snapshot = get_snapshot(engine, snapshot_id)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT messages FROM sft_snapshot_examples WHERE snapshot_id = :id "
            "ORDER BY position"), {"id": snapshot.snapshot_id}).scalars().all()
    return snapshot, [ChatExample(messages=list(m)) for m in rows]


def list_snapshots(engine: Engine, limit: int = 50) -> list[tuple[str, int, dict[str, Any],
                                                                  datetime]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT snapshot_id, n_examples, filter, created_at FROM sft_snapshots "
            "ORDER BY created_at DESC LIMIT :n"), {"n": limit})]
