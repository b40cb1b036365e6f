"""`customllm source postgres` against a second database on the embedded Postgres: rows become
documents, an UPDATE and a DELETE reach the index (by polling and by LISTEN/NOTIFY), a restart
publishes nothing new."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from sqlalchemy import create_engine

from services.cli.source_cmds import PostgresTableSource, TableSpec
from services.common.config import get_settings
from services.rag.access import scope_for
from services.rag.retrieval import retrieve
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def user_db(stack):
    """A fresh database beside the platform's, owned by the test, dropped after."""
    base = stack.settings.sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"usersrc_{uuid.uuid4().hex[:8]}"
    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""CREATE TABLE kb_articles (
            id integer PRIMARY KEY, title text NOT NULL, body text NOT NULL,
            teams text[] NOT NULL DEFAULT '{}', updated_at timestamptz NOT NULL DEFAULT now())""")
        for i in range(5):
            conn.execute("INSERT INTO kb_articles (id, title, body, teams) VALUES (%s, %s, %s, %s)",
                         (i, f"Article {i}", f"zqart{i} body of article {i} about refunds "
                          "and shipping windows for customers.", ["group:support"]))
    yield dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _find(stack, word: str) -> list:
    engine = create_engine(stack.settings.sqlalchemy_url)
    try:
        return retrieve(engine, None, word, scope_for("u", ("group:support",), "internal"), 3,
                        mode="lexical")
    finally:
        engine.dispose()


def test_table_rows_updates_and_deletes_reach_the_index(stack, workers, user_db, tmp_path):
    prefix = f"pg-{uuid.uuid4().hex[:6]}/"
    spec = TableSpec(user_db, "kb_articles", "id", ("body",), "updated_at",
                     title_column="title", acl_column="teams", source="tests", id_prefix=prefix)
    state = tmp_path / "pg-state.json"
    connector = PostgresTableSource(spec, get_settings(), state)
    first = connector.sync_once()
    assert (first.upserts, first.deletes) == (5, 0)
    ids = [f"{prefix}kb_articles/{i}" for i in range(5)]
    wait_for(lambda: len(stack.indexed_versions(ids)) == 5, 120, what="rows indexed")
    row = stack.query("SELECT title, acl, source FROM documents WHERE doc_id = :d", d=ids[2])[0]
    assert tuple(row) == ("Article 2", ["group:support"], "tests")
    assert _find(stack, "zqart2")[0].doc_id == ids[2]

    # A restart publishes nothing for unchanged rows.
    restarted = PostgresTableSource(spec, get_settings(), state)
    assert (restarted.sync_once().upserts, restarted.sync_once().deletes) == (0, 0)

    # UPDATE and DELETE, picked up by the next sync.
    with psycopg.connect(user_db, autocommit=True) as conn:
        conn.execute("UPDATE kb_articles SET body = 'zqnew2 rewritten body about returns', "
                     "updated_at = now() WHERE id = 2")
        conn.execute("DELETE FROM kb_articles WHERE id = 4")
    result = restarted.sync_once()
    assert (result.upserts, result.deletes) == (1, 1)
    wait_for(lambda: bool(_find(stack, "zqnew2")), 60, what="the update to be queryable")
    assert not _find(stack, "zqart2")
    wait_for(lambda: not _find(stack, "zqart4"), 60, what="the deleted row to leave")

    # Live: the NOTIFY trigger wakes the connector; no explicit sync.
    restarted.install_trigger()
    stop = threading.Event()
    thread = threading.Thread(target=restarted.run, args=(stop, 30.0), daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        with psycopg.connect(user_db, autocommit=True) as conn:
            conn.execute("INSERT INTO kb_articles (id, title, body, teams) VALUES "
                         "(9, 'Late', 'zqlive9 a row inserted while listening', '{group:support}')")
            conn.execute("DELETE FROM kb_articles WHERE id = 0")
        started = time.perf_counter()
        wait_for(lambda: bool(_find(stack, "zqlive9")) and not _find(stack, "zqart0"), 60,
                 interval_s=0.05, what="the notified changes to reach the index")
        assert time.perf_counter() - started < 25  # well before the 30 s poll
    finally:
        stop.set()
        thread.join(timeout=10)

    # Drift a cursor cannot see: a row written with an old updated_at (a late commit), and a
    # document the index lost. The table reconcile finds both and --apply fixes them.
    restarted.sync_once()
    with psycopg.connect(user_db, autocommit=True) as conn:
        conn.execute("UPDATE kb_articles SET body = 'zqlate1 committed late', "
                     "updated_at = now() - interval '1 day' WHERE id = 1")
    with stack.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM documents WHERE doc_id = %s", (ids[3],))
    assert restarted.sync_once().upserts == 0  # the cursor misses the late row
    drift = restarted.reconcile()
    assert (drift.missing, drift.stale, drift.orphaned, drift.failed) == (
        [ids[3]], [ids[1]], [], [])
    restarted.reconcile(apply=True)
    wait_for(lambda: restarted.reconcile().drifted == 0, 60, interval_s=0.5,
             what="the table drift to be fixed")
    assert _find(stack, "zqlate1")[0].doc_id == ids[1]
