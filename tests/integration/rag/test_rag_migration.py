"""Migration 0002: the generated privacy rank agrees with services.rag.access, the filter
indexes exist, and the revision downgrades and upgrades cleanly."""

import uuid

import pytest
from alembic import command
from sqlalchemy import text

from services.common import migrate
from services.rag.access import privacy_rank

pytestmark = pytest.mark.integration

INDEXES = ("documents_privacy_rank_idx", "documents_source_idx", "documents_license_idx",
           "documents_metadata_idx", "documents_doc_id_prefix_idx")


@pytest.mark.parametrize("privacy_class", ["public", "internal", "confidential", "restricted",
                                           "top-secret", "PUBLIC"])
def test_generated_rank_matches_python(stack, privacy_class):
    doc_id = f"rag-rank-{uuid.uuid4().hex}"
    with stack.engine.begin() as conn:
        conn.execute(text("INSERT INTO documents (doc_id, version, privacy_class) "
                          "VALUES (:d, 1, :c)"), {"d": doc_id, "c": privacy_class})
    (rank,) = stack.query("SELECT privacy_rank FROM documents WHERE doc_id = :d", d=doc_id)[0]
    assert rank == privacy_rank(privacy_class)


def test_rank_follows_a_class_change(stack):
    doc_id = f"rag-rank-{uuid.uuid4().hex}"
    with stack.engine.begin() as conn:
        conn.execute(text("INSERT INTO documents (doc_id, version, privacy_class) "
                          "VALUES (:d, 1, 'public')"), {"d": doc_id})
        conn.execute(text("UPDATE documents SET privacy_class = 'confidential' "
                          "WHERE doc_id = :d"), {"d": doc_id})
    assert stack.query("SELECT privacy_rank FROM documents WHERE doc_id = :d",
                       d=doc_id)[0][0] == 2


def test_filter_indexes_exist(stack):
    names = {r[0] for r in stack.query(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'documents'")}
    assert set(INDEXES) <= names


def _has_rank_column(stack) -> bool:
    return bool(stack.query("SELECT 1 FROM information_schema.columns WHERE "
                            "table_name = 'documents' AND column_name = 'privacy_rank'"))


def test_downgrade_then_upgrade(stack):
    url = stack.settings.sqlalchemy_url
    try:
        command.downgrade(migrate.alembic_config(url), "0001")
        assert migrate.current_revision(url) == "0001"
        assert not _has_rank_column(stack)
        names = {r[0] for r in stack.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'documents'")}
        assert names.isdisjoint(INDEXES)
    finally:
        migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision(url)
    assert _has_rank_column(stack)
