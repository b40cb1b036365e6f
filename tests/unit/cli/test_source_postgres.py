"""The Postgres table source's pure parts: its saved state and the documents rows become (the
database side runs in tests/e2e/test_sources_postgres.py against a real second database)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.cli.source_cmds import PostgresTableSource, SyncState, TableSpec
from services.common.config import get_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("cursor", [None, 42, datetime(2026, 12, 2, 6, 0, tzinfo=UTC),
                                    Decimal("7.5")])
def test_state_round_trips_any_version_type(tmp_path, cursor):
    path = tmp_path / "s.json"
    SyncState(cursor, {"t/1", "t/2"}, {"2"}).save(path)
    loaded = SyncState.load(path)
    assert (loaded.cursor, loaded.ids, loaded.at_cursor) == (cursor, {"t/1", "t/2"}, {"2"})


def test_a_row_becomes_a_document_without_the_dsn_password(tmp_path):
    spec = TableSpec("postgresql://app:s3cret@db.internal:5432/crm", "public.kb", "id",
                     ("summary", "body"), "updated_at", title_column="title",
                     acl_column="teams", source="crm", id_prefix="crm/")
    source = PostgresTableSource(spec, get_settings(), tmp_path / "s.json", producers=object())
    change = source._change({"id": 7, "summary": "Short.", "body": " Long text. ",
                             "title": "Refunds", "teams": ["group:a"], "updated_at": 3}, 99)
    assert change.doc_id == "crm/public.kb/7" and change.version == 99
    assert change.content == "Short.\n\nLong text."
    assert (change.title, change.acl, change.source) == ("Refunds", ["group:a"], "crm")
    assert "s3cret" not in change.model_dump_json()
    assert change.uri == "postgresql://db.internal:5432/crm#public.kb/7"
    assert spec.channel == "customllm_public_kb"
