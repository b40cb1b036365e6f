"""`customllm source postgres`: rows of a user's table become documents.

Change capture without logical replication (which needs a replication slot, `wal_level=logical`
and superuser-ish rights most application databases do not grant): a **version column** that
the application bumps on every write (an ``updated_at`` timestamp or an increasing integer)
finds inserts and updates (``WHERE version > cursor``), and a comparison of the table's ids
with the ids published before finds deletes. ``LISTEN`` on a channel wakes the loop as soon as
a row changes; ``--install-trigger`` creates the trigger that sends those notifications (it
needs the right to create a trigger on the table; without it the loop simply polls).

The cursor and the published ids are kept in a state file (written after the broker
acknowledged), so a restart publishes only what changed while it was down, deletes included.
Events are published as the source's approved Kafka identity, like `customllm publish`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import typer
from psycopg import sql
from psycopg.rows import dict_row
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.cli.console import console
from services.cli.publish import _send
from services.cli.reconcile_cmd import report_drift
from services.common import telemetry
from services.common.config import Settings, get_settings
from services.common.db import make_engine
from services.common.events import DocChange
from services.common.source_publisher import SourceProducers
from services.ingest.chunking import content_hash
from services.ingest.reconcile import Drift, compare, load_indexed, record_drift

source_app = typer.Typer(no_args_is_help=True, help="Connectors that publish an external "
                         "system's records as documents.")

_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())


@dataclass(frozen=True)
class TableSpec:
    dsn: str
    table: str
    id_column: str
    text_columns: tuple[str, ...]
    version_column: str
    title_column: str | None = None
    acl_column: str | None = None
    source: str = "postgres"
    id_prefix: str = ""
    privacy_class: str = "internal"
    license: str | None = None
    acl: tuple[str, ...] = ()

    @property
    def channel(self) -> str:
        return f"customllm_{self.table.replace('.', '_')}"[:63]

    def table_ident(self) -> sql.Composable:
        return sql.Identifier(*self.table.split("."))

    def safe_uri(self) -> str:
        """The DSN without credentials, as the documents' uri."""
        parts = urlsplit(self.dsn)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class SyncState:
    """Where the last sync stopped: the highest version seen and the ids published."""

    cursor: Any = None
    ids: set[str] = field(default_factory=set)
    # Row ids already published at exactly ``cursor``: rows written later with the same
    # version value (same timestamp) are still picked up (``>=``) but these are not resent.
    at_cursor: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> SyncState:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls(_decode(raw.get("cursor")), set(raw.get("ids", [])),
                   set(raw.get("at_cursor", [])))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cursor": _encode(self.cursor), "ids": sorted(self.ids),
                                   "at_cursor": sorted(self.at_cursor)}))
        os.replace(tmp, path)


def _encode(value: Any) -> Any:  # noqa: ANN401 - a version column of any orderable type
    if isinstance(value, datetime | date):
        return {"t": type(value).__name__, "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {"t": "decimal", "v": str(value)}
    return value


def _decode(value: Any) -> Any:  # noqa: ANN401
    if isinstance(value, dict):
        kind, raw = value.get("t"), value.get("v")
        if kind == "datetime":
            return datetime.fromisoformat(raw)
        if kind == "date":
            return date.fromisoformat(raw)
        if kind == "decimal":
            return Decimal(raw)
    return value


@dataclass
class SyncResult:
    upserts: int = 0
    deletes: int = 0


class PostgresTableSource:
    """One table, synced into docs.changes."""

    def __init__(self, spec: TableSpec, settings: Settings, state_file: Path | None = None,
                 producers: SourceProducers | None = None) -> None:
        self.spec = spec
        self.settings = settings
        key = f"{spec.safe_uri()}|{spec.table}|{spec.id_prefix}".encode()
        self.state_file = state_file or (settings.state_path / "sources" /
                                         f"pg-{hashlib.sha256(key).hexdigest()[:16]}.json")
        self.state = SyncState.load(self.state_file)
        self.producers = producers or SourceProducers(settings)
        self.tracer = telemetry.tracer(__name__)

    def doc_id(self, row_id: Any) -> str:  # noqa: ANN401 - any key type
        return f"{self.spec.id_prefix}{self.spec.table}/{row_id}"

    def _select(self) -> sql.Composed:
        """Rows at or after the cursor, oldest first (identifiers quoted, never interpolated)."""
        spec = self.spec
        columns = [spec.id_column, spec.version_column, *spec.text_columns]
        columns += [c for c in (spec.title_column, spec.acl_column) if c]
        after = sql.SQL("") if self.state.cursor is None else sql.SQL(
            " AND {version} >= {cursor}").format(version=sql.Identifier(spec.version_column),
                                                  cursor=sql.Placeholder("cursor"))
        return sql.SQL("SELECT {cols} FROM {table} WHERE {version} IS NOT NULL{after} "
                       "ORDER BY {version}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            table=spec.table_ident(), version=sql.Identifier(spec.version_column), after=after)

    def _change(self, row: dict[str, Any], version: int) -> DocChange:
        spec = self.spec
        parts = [str(row[c]).strip() for c in spec.text_columns if row.get(c) not in (None, "")]
        acl = list(spec.acl)
        if spec.acl_column and row.get(spec.acl_column):
            value = row[spec.acl_column]
            acl = [str(a) for a in (value if isinstance(value, list | tuple) else [value])]
        title = str(row[spec.title_column]) if spec.title_column and row.get(
            spec.title_column) is not None else None
        row_id = row[spec.id_column]
        return DocChange(
            doc_id=self.doc_id(row_id), version=version, op="upsert",
            content="\n\n".join(parts), content_type="text/plain", title=title,
            source=spec.source, uri=f"{spec.safe_uri()}#{spec.table}/{row_id}",
            license=spec.license, privacy_class=spec.privacy_class, acl=acl,  # type: ignore[arg-type]
            lineage={"publisher": "customllm source postgres", "table": spec.table,
                     "id": str(row_id), "row_version": str(row[spec.version_column])})

    def sync_once(self, show_progress: bool = False) -> SyncResult:
        """Publish rows changed since the cursor, and deletes for ids no longer in the table;
        the state advances only after the broker acknowledged everything."""
        spec = self.spec
        with psycopg.connect(self.spec.dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._select(), {"cursor": self.state.cursor})
            rows = [r for r in cur.fetchall()
                    if not (r[spec.version_column] == self.state.cursor
                            and str(r[spec.id_column]) in self.state.at_cursor)]
            cur.execute(sql.SQL("SELECT {id}::text AS id FROM {table}").format(
                id=sql.Identifier(spec.id_column), table=spec.table_ident()))
            present = {r["id"] for r in cur.fetchall()}
        prefix = f"{spec.id_prefix}{spec.table}/"
        gone = sorted(i for i in self.state.ids
                      if i.startswith(prefix) and i[len(prefix):] not in present)
        version = time.time_ns() // 1000
        errors: list[str] = []
        producer = self.producers.for_source(spec.source)
        with Progress(*_COLUMNS, console=console, disable=not show_progress) as progress:
            task = progress.add_task(f"{spec.table}", total=len(rows) + len(gone))
            for offset, row in enumerate(rows):
                _send(self.tracer, producer, self._change(row, version + offset), errors)
                progress.advance(task)
            for offset, doc_id in enumerate(gone):
                _send(self.tracer, producer, DocChange(doc_id=doc_id, op="delete",
                                                       version=version + len(rows) + offset,
                                                       source=spec.source), errors)
                progress.advance(task)
            self.producers.flush(errors)
        if errors:
            raise RuntimeError(f"{len(errors)} event(s) not delivered: {errors[0]}")
        if rows:
            newest = rows[-1][spec.version_column]
            same = {str(r[spec.id_column]) for r in rows if r[spec.version_column] == newest}
            self.state.at_cursor = same | (self.state.at_cursor
                                           if newest == self.state.cursor else set())
            self.state.cursor = newest
        self.state.ids |= {self.doc_id(r[spec.id_column]) for r in rows}
        self.state.ids -= set(gone)
        self.state.save(self.state_file)
        return SyncResult(upserts=len(rows), deletes=len(gone))

    def reconcile(self, apply: bool = False) -> Drift:
        """The whole table against the index (content hashes, not the cursor): catches what a
        version column cannot, e.g. a row committed late with an older ``updated_at``. With
        ``apply``, publishes the upserts and deletes that close the gap."""
        spec = self.spec
        saved, self.state.cursor = self.state.cursor, None
        try:
            with psycopg.connect(spec.dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(self._select(), {})
                rows = {self.doc_id(r[spec.id_column]): r for r in cur.fetchall()}
        finally:
            self.state.cursor = saved
        changes = {doc_id: self._change(row, 0) for doc_id, row in rows.items()}
        source = {doc_id: content_hash(c.content or "") for doc_id, c in changes.items()}
        engine = make_engine(self.settings.sqlalchemy_url, pool_size=1)
        try:
            indexed = load_indexed(engine, id_prefix=f"{spec.id_prefix}{spec.table}/",
                                   source=spec.source)
        finally:
            engine.dispose()
        drift = compare(source, indexed)
        record_drift(drift, f"{spec.source}:{spec.table}")
        if apply and drift.drifted:
            version = time.time_ns() // 1000
            errors: list[str] = []
            producer = self.producers.for_source(spec.source)
            fixes = [*drift.missing, *drift.stale, *drift.failed]
            for offset, doc_id in enumerate(fixes):
                change = changes[doc_id].model_copy(update={"version": version + offset})
                _send(self.tracer, producer, change, errors)
            for offset, doc_id in enumerate(drift.orphaned):
                _send(self.tracer, producer, DocChange(
                    doc_id=doc_id, op="delete", version=version + len(fixes) + offset,
                    source=spec.source), errors)
            self.producers.flush(errors)
            if errors:
                raise RuntimeError(f"{len(errors)} event(s) not delivered: {errors[0]}")
            self.state.ids = (self.state.ids | set(fixes)) - set(drift.orphaned)
            self.state.save(self.state_file)
        return drift

    def install_trigger(self) -> None:
        """A trigger that NOTIFYs the channel on every insert, update and delete."""
        spec = self.spec
        function = sql.Identifier(f"{spec.channel}_notify")
        with psycopg.connect(spec.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(
                "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN PERFORM pg_notify({channel}, TG_OP); RETURN NULL; END $$").format(
                fn=function, channel=sql.Literal(spec.channel)))
            conn.execute(sql.SQL(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {fn}()").format(
                trigger=sql.Identifier(f"{spec.channel}_trg"), table=spec.table_ident(),
                fn=function))

    def run(self, stop: threading.Event, poll_s: float = 5.0, settle_s: float = 0.05) -> None:
        """Sync on every notification (and at least every ``poll_s``) until ``stop``."""
        with psycopg.connect(self.spec.dsn, autocommit=True) as listener:
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.spec.channel)))
            last_sync = time.monotonic()
            while not stop.is_set():
                # Short waits, so a stop request is honoured within half a second.
                notified = any(True for _ in listener.notifies(timeout=min(poll_s, 0.5),
                                                               stop_after=1))
                if not notified and time.monotonic() - last_sync < poll_s:
                    continue
                last_sync = time.monotonic()
                if notified:
                    time.sleep(settle_s)  # let a burst of writes commit, then sync once
                    for _ in listener.notifies(timeout=0):
                        pass
                if stop.is_set():
                    break
                result = self.sync_once()
                if result.upserts or result.deletes:
                    console.print(f"{self.spec.table}: {result.upserts} upsert(s), "
                                  f"{result.deletes} delete(s)")


def _split(values: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip())


@source_app.command("postgres")
def postgres_source(
    dsn: str = typer.Option(..., help="libpq URI of the user's database (read access)."),
    table: str = typer.Option(..., help="Table (or schema.table)."),
    id_column: str = typer.Option(..., help="Primary key column: doc id is TABLE/ID."),
    text_columns: str = typer.Option(..., help="Comma-separated columns that hold the text."),
    version_column: str = typer.Option(..., help="updated_at timestamp or increasing integer "
                                       "the application bumps on every write."),
    title_column: str | None = typer.Option(None, help="Column with the document title."),
    acl_column: str | None = typer.Option(None, help="Column (text or text[]) with the row's "
                                          "ACL; otherwise --acl."),
    source: str = typer.Option("postgres", help="Approved source name to publish as."),
    id_prefix: str = typer.Option("", help="Prefix for doc ids."),
    privacy_class: str = typer.Option("internal", help="public|internal|confidential|restricted"),
    license: str | None = typer.Option(None, "--license"),
    acl: list[str] = typer.Option([], "--acl", help="Principal or group (repeatable)."),
    once: bool = typer.Option(False, "--once", help="Sync once and exit."),
    poll: float = typer.Option(5.0, help="Seconds between polls without notifications."),
    install_trigger: bool = typer.Option(False, help="Create the NOTIFY trigger on the table."),
    reconcile: bool = typer.Option(False, "--reconcile", help="Compare the whole table with "
                                   "the index, report the drift and exit."),
    apply: bool = typer.Option(False, "--apply", help="With --reconcile: publish the fixes."),
) -> None:
    """Publish a table's rows as documents; updates and deletes follow (LISTEN/NOTIFY)."""
    settings = get_settings()
    telemetry.setup_tracing("customllm-source", settings)
    spec = TableSpec(dsn, table, id_column, _split(text_columns), version_column, title_column,
                     acl_column, source, id_prefix, privacy_class, license, tuple(acl))
    connector = PostgresTableSource(spec, settings)
    if reconcile:
        from services.common import metrics

        metrics.setup_metrics("customllm-source", settings)
        drift = connector.reconcile(apply)
        report_drift(drift, f"{source}:{table}")
        if apply and drift.drifted:
            console.print(f"published {drift.drifted} fix event(s)")
        telemetry.shutdown_tracing()
        return
    if install_trigger:
        connector.install_trigger()
        console.print(f"trigger installed: NOTIFY {spec.channel} on every write to {table}")
    first = connector.sync_once(show_progress=True)
    console.print(f"{table}: {first.upserts} upsert(s), {first.deletes} delete(s) published")
    if not once:
        console.print(f"listening on {spec.channel} (poll every {poll:g} s); Ctrl-C stops")
        stop = threading.Event()
        try:
            connector.run(stop, poll)
        except KeyboardInterrupt:
            stop.set()
    telemetry.shutdown_tracing()
