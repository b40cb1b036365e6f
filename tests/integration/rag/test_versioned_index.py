"""The versioned index against real Postgres and the two shipped encoders (MiniLM, e5):
coverage, the switch refused below 100%, a crashed re-index resuming, a document published
during a re-index searchable under both models, and queries answered throughout a re-index and
a switch (no error, never empty)."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import index_registry as registry
from services.common import migrate
from services.common.config import Settings
from services.common.db import make_engine
from services.common.embeddings import E5_SMALL, embedder_for
from services.common.events import ChunkWork, DocumentInfo, WorkChunk
from services.common.reindex import reindex
from services.embedder import store
from services.embedder.models import WrittenModels
from services.rag.access import scope_for
from services.rag.query_encoder import QueryEncoder
from services.rag.retrieval import RetrievalFilters, retrieve
from tests.integration.rag.rows import Doc, write_documents
from tests.support.databases import own_database

pytestmark = pytest.mark.integration

CORPUS = {
    "tides": "Tides are caused by the gravitational pull of the moon and the sun on the oceans.",
    "bread": "Sourdough bread rises because wild yeast and lactic bacteria ferment the dough.",
    "volcano": "A volcano erupts when pressure from molten magma forces it through the crust.",
    "chess": "In chess, castling moves the king two squares toward a rook in a single turn.",
    "photosynthesis": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
    "jazz": "Bebop jazz of the 1940s favoured fast tempos and complex chord changes.",
}
QUESTIONS = {"tides": "what makes the ocean tides happen?",
             "bread": "why does sourdough rise?",
             "chess": "how does castling work in chess?"}


def _restore(engine, model_id: str) -> None:
    """Test-only: put the configured model back as active for the rest of the session (other
    tests write rows for the active model directly), and retire e5 so nothing else writes it."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE index_models SET state = 'retired' WHERE state <> 'active' "
                          "AND model_id = :e5"), {"e5": E5_SMALL})
        conn.execute(text("UPDATE index_models SET state = 'ready' WHERE state = 'active' "
                          "AND model_id <> :m"), {"m": model_id})
        conn.execute(text("UPDATE index_models SET state = 'active' WHERE model_id = :m"),
                     {"m": model_id})
        conn.execute(text("UPDATE index_models SET state = 'retired' WHERE model_id = :e5 "
                          "AND state <> 'active'"), {"e5": E5_SMALL})
        conn.execute(text("DELETE FROM chunk_embeddings WHERE model_id = :e5"),
                     {"e5": E5_SMALL})


@dataclass(frozen=True)
class OwnIndex:
    """The stack's Postgres server with a database of this module's own."""

    settings: Settings
    engine: Engine


@pytest.fixture(scope="module")
def own(stack) -> Iterator[OwnIndex]:
    """A re-index reads every chunk of the index, and by the time this module runs the shared
    database holds every other test's chunks: one test spent 13 minutes of a CI run embedding
    them with e5. Here the index holds this module's documents only."""
    with own_database(stack.settings.sqlalchemy_url, "vidx") as url:
        migrate.upgrade(url, embedding_model_id=stack.settings.embedding_model_id)
        engine = make_engine(url)
        try:
            yield OwnIndex(stack.settings.model_copy(update={"database_url": SecretStr(url)}),
                           engine)
        finally:
            engine.dispose()


@pytest.fixture
def versioned(own, embedder):
    """A fresh corpus under its own prefix; e5 reset before and after."""
    with own.engine.connect() as conn:
        original = registry.active_model(conn)
    _restore(own.engine, original)
    prefix = f"vidx-{uuid.uuid4().hex[:8]}/"
    names = list(CORPUS)
    vectors = embedder.encode_passages([CORPUS[n] for n in names])
    write_documents(own.engine, [Doc(prefix + n, [CORPUS[n]], vectors=vectors[i:i + 1])
                                   for i, n in enumerate(names)])
    yield prefix, original
    _restore(own.engine, original)


@pytest.fixture(scope="module")
def e5():
    model = embedder_for(E5_SMALL)
    model.warm_up()
    return model


def _coverage(engine, model_id: str) -> registry.Coverage:
    with engine.connect() as conn:
        return next(c for c in registry.coverage(conn) if c.model_id == model_id)


def _top(engine, encoder, prefix: str, question: str, model_id: str | None = None) -> list[str]:
    if model_id is None:
        model_id, vector = encoder.encode(question)
    else:
        vector = encoder.embedder(model_id).encode_queries([question])[0]
    got = retrieve(engine, vector, question, scope_for("reader", [], "public"), 3,
                   RetrievalFilters(doc_id_prefix=prefix), model_id=model_id)
    return [c.doc_id.removeprefix(prefix) for c in got]


class Crash(RuntimeError):
    pass


def test_crashed_reindex_resumes_and_switch_needs_full_coverage(own, embedder, e5,
                                                                 versioned):
    prefix, original = versioned
    before = _coverage(own.engine, original)

    def crash(batches: int) -> None:
        if batches == 1:
            raise Crash("killed mid re-index")

    with pytest.raises(Crash):
        reindex(own.engine, e5, batch_size=2, after_batch=crash)
    partial = _coverage(own.engine, E5_SMALL)
    assert partial.state == "building"
    assert 0 < partial.embedded < partial.total  # one committed batch, nothing half-written
    # The active model loses nothing.
    after = _coverage(own.engine, original)
    assert (after.state, after.embedded) == ("active", before.embedded)

    with pytest.raises(registry.SwitchRefused, match="needs 100%"), \
            own.engine.begin() as conn:
        registry.switch(conn, E5_SMALL, "tests")
    with own.engine.connect() as conn:
        assert registry.active_model(conn) == original

    report = reindex(own.engine, e5, batch_size=64)  # resumes: only the missing chunks
    done = _coverage(own.engine, E5_SMALL)
    assert done.complete and done.index_ready and report.state == "ready"
    # Only the missing chunks (no worker writes this module's database).
    assert report.embedded + report.reused == done.total - partial.embedded > 0
    with own.engine.connect() as conn:
        dupes = conn.execute(text(
            "SELECT count(*) - count(DISTINCT chunk_id) FROM chunk_embeddings "
            "WHERE model_id = :m"), {"m": E5_SMALL}).scalar_one()
    assert dupes == 0

    with own.engine.begin() as conn:
        result = registry.switch(conn, E5_SMALL, "ana")
    assert (result.previous, result.active) == (original, E5_SMALL)
    with own.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT from_model, to_model, switched_by, switched_at FROM index_switches "
            "ORDER BY switch_id DESC LIMIT 1")).one()
        assert registry.active_model(conn) == E5_SMALL
    assert row[:3] == (original, E5_SMALL, "ana") and row[3] is not None


def test_document_published_during_reindex_is_searchable_under_both(own, embedder, e5,
                                                                    versioned):
    prefix, original = versioned
    doc_id = prefix + "lighthouse"
    body = "The lighthouse keeper trimmed the lamp wick every evening before the fog rolled in."
    content_hash = hashlib.sha256(body.encode()).hexdigest()
    work = ChunkWork(
        doc_id=doc_id, version=1, op="upsert", content_hash=content_hash,
        document=DocumentInfo(content_type="text/plain", title="lighthouse", source="tests",
                              uri="https://docs/lighthouse", license="CC-BY-4.0",
                              privacy_class="public", acl=[], lineage={}, metadata={}),
        chunks=[WorkChunk(chunk_id=f"{doc_id}#0", ordinal=0, content_hash=content_hash,
                          text=body, word_count=len(body.split()), embed=True)])
    models = WrittenModels(own.engine, embedder)

    def publish_midway(batches: int) -> None:
        if batches != 1:
            return
        # What the embedder does for a batch: the models to write (active first, then the
        # shadow build), each encodes the passages, one swap transaction writes them all.
        written = models.current()
        assert written == [original, E5_SMALL]
        by_model = {m: {content_hash: models.encoder(m).encode_passages([body])[0]}
                    for m in written}
        with own.engine.begin() as conn:
            result = store.apply_work(conn, work, by_model[original], original)
            store.store_model_vectors(conn, work, by_model)
        assert result.state == "indexed"

    reindex(own.engine, e5, batch_size=2, after_batch=publish_midway)
    assert _coverage(own.engine, E5_SMALL).complete
    encoder = QueryEncoder(own.engine, embedder, ttl_s=0.0)
    question = "who trimmed the lamp wick before the fog?"
    assert _top(own.engine, encoder, prefix, question, original)[0] == "lighthouse"
    assert _top(own.engine, encoder, prefix, question, E5_SMALL)[0] == "lighthouse"


def test_queries_answered_through_reindex_and_switch(own, embedder, e5, versioned):
    prefix, original = versioned
    encoder = QueryEncoder(own.engine, embedder, ttl_s=0.05)
    encoder.embedder(E5_SMALL)  # shares the loaded e5 (same process)
    stop = threading.Event()
    answered: list[tuple[str, str, list[str]]] = []
    errors: list[BaseException] = []

    def load() -> None:
        while not stop.is_set():
            for target, question in QUESTIONS.items():
                try:
                    model_id, vector = encoder.encode(question)
                    got = retrieve(own.engine, vector, question,
                                   scope_for("reader", [], "public"), 3,
                                   RetrievalFilters(doc_id_prefix=prefix), model_id=model_id)
                    answered.append((model_id, target,
                                     [c.doc_id.removeprefix(prefix) for c in got]))
                except BaseException as exc:  # noqa: BLE001 - collected, asserted below
                    errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        reindex(own.engine, e5, batch_size=4)
        with own.engine.begin() as conn:
            registry.switch(conn, E5_SMALL, "load-test")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(m == E5_SMALL for m, _, _ in answered):
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not errors, errors[:3]
    used = {m for m, _, _ in answered}
    assert used == {original, E5_SMALL}, used  # the switch was picked up without a restart
    assert all(ids for _, _, ids in answered)  # never an empty result
    wrong = [(m, t, ids) for m, t, ids in answered if ids[0] != t]
    assert not wrong, wrong[:5]


def test_index_commands_reindex_status_and_switch(own, embedder, versioned, monkeypatch):
    from typer.testing import CliRunner

    from services.cli import db
    from services.cli.main import app

    prefix, original = versioned
    monkeypatch.setattr(db, "get_settings", lambda: own.settings)
    runner = CliRunner()
    refused = runner.invoke(app, ["index", "switch", "--model", "e5", "--by", "ops"])
    assert refused.exit_code == 2, refused.output
    assert "switch refused" in refused.output

    built = runner.invoke(app, ["index", "reindex", "--model", "e5", "--batch-size", "16"])
    assert built.exit_code == 0, built.output
    assert f"{E5_SMALL}" in built.output and "state ready" in built.output
    status = runner.invoke(app, ["index", "status"])
    assert status.exit_code == 0, status.output
    e5_line = next(line for line in status.output.splitlines() if "e5" in line)
    assert "ready" in e5_line and "100.0%" in e5_line

    switched = runner.invoke(app, ["index", "switch", "--model", "e5", "--by", "ops"])
    assert switched.exit_code == 0, switched.output
    assert f"active model: {E5_SMALL}" in switched.output
    after = runner.invoke(app, ["index", "status"])
    assert f"switched {original} → {E5_SMALL} by ops" in after.output
    encoder = QueryEncoder(own.engine, embedder, ttl_s=0.0)
    assert _top(own.engine, encoder, prefix, QUESTIONS["chess"])[0] == "chess"
