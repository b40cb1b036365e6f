"""A fresh database serves the configured encoder: migration 0010 seeds the registry with the
encoder of its day (the torch MiniLM), and ``migrate.upgrade(..., embedding_model_id=...)``
hands an index without chunks to the configured one. An index with chunks keeps its model."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.common import migrate
from services.common.db import make_engine
from services.common.embeddings import E5_SMALL, MINILM, MINILM_INT8
from services.common.index_registry import active_model, adopt_when_empty, index_name
from tests.integration.rag.rows import Doc, write_documents
from tests.support.databases import own_database

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_db(stack):
    """An empty database beside the platform's, dropped after."""
    with own_database(stack.settings.sqlalchemy_url, "adopt") as url:
        yield url


def _states(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT model_id, state FROM index_models")).all())


def test_fresh_install_serves_the_configured_encoder(fresh_db):
    migrate.upgrade(fresh_db, embedding_model_id="minilm-int8")
    engine = make_engine(fresh_db, pool_size=1)
    try:
        assert _states(engine) == {MINILM_INT8: "active", MINILM: "retired"}
        with engine.connect() as conn:
            switched = conn.execute(text(
                "SELECT from_model, to_model, chunks FROM index_switches")).all()
            built = conn.execute(text("SELECT indisvalid FROM pg_index i JOIN pg_class c "
                                      "ON c.oid = i.indexrelid WHERE c.relname = :n"),
                                 {"n": index_name(MINILM_INT8)}).scalar()
        assert [tuple(row) for row in switched] == [(MINILM, MINILM_INT8, 0)]
        assert built is True
        # Running the step again (every `customllm up`) changes nothing.
        migrate.upgrade(fresh_db, embedding_model_id=MINILM_INT8)
        assert _states(engine) == {MINILM_INT8: "active", MINILM: "retired"}
    finally:
        engine.dispose()


def test_an_index_with_chunks_keeps_its_model(fresh_db):
    migrate.upgrade(fresh_db, embedding_model_id=MINILM_INT8)
    engine = make_engine(fresh_db, pool_size=1)
    try:
        write_documents(engine, [Doc("adopt/kept", ["a chunk embedded by the active model"])])
        assert adopt_when_empty(engine, E5_SMALL) is None
        with engine.connect() as conn:
            assert active_model(conn) == MINILM_INT8
        assert E5_SMALL not in _states(engine)
    finally:
        engine.dispose()
