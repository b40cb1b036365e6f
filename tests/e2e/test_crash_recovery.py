"""Crashes converge: kill -9 of a worker, or a broker restart, in the middle of a run ends in
exactly the chunk table a clean run produces (no loss, no duplicates).

The clean run's table is computed from the deterministic chunker, which is what a run without
failures stores (the ingestion flow tests check that equality on their own)."""

from __future__ import annotations

import pytest

from tests.support.documents import change, expected_hashes, paragraphs, unique_prefix
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e

DOCS = 500


def _run(prefix: str, count: int, seed: int) -> list:
    return [change(f"{prefix}{i:04d}", 1, paragraphs(seed * 10_000 + i, 2, words=30))
            for i in range(count)]


def _indexed(stack, prefix: str) -> int:
    return stack.query("SELECT count(*) FROM ingestion_status WHERE doc_id LIKE :p "
                       "AND state = 'indexed'", p=prefix + "%")[0][0]


def _assert_clean_table(stack, changes) -> None:
    ids = [c.doc_id for c in changes]
    rows = stack.chunk_rows(ids)
    got: dict[str, list[str]] = {}
    for doc_id, ordinal, content_hash, _chunk_id in rows:
        got.setdefault(doc_id, []).append(content_hash)
        assert ordinal == len(got[doc_id]) - 1, f"gap or duplicate ordinal in {doc_id}"
    expected = {c.doc_id: expected_hashes(c.content) for c in changes}
    assert got == expected
    assert len({r[3] for r in rows}) == len(rows)
    nulls = stack.query("SELECT count(*) FROM chunks WHERE doc_id = ANY(:ids) "
                        "AND embedding IS NULL", ids=ids)[0][0]
    assert nulls == 0


@pytest.mark.parametrize("victim", ["ingest", "embedder"])
def test_kill9_worker_mid_run_converges_to_the_clean_table(stack, workers, victim):
    prefix = unique_prefix(f"kill-{victim}")
    changes = _run(prefix, DOCS, seed=1 if victim == "ingest" else 2)
    stack.publish(changes)
    wait_for(lambda: _indexed(stack, prefix) >= DOCS // 10, 180, interval_s=0.05,
             what="the run to be under way")
    workers.kill9(victim)
    assert _indexed(stack, prefix) < DOCS, "the run finished before the kill; nothing tested"
    workers.start(victim)
    stack.wait_indexed({c.doc_id: 1 for c in changes}, timeout_s=300)
    _assert_clean_table(stack, changes)


def test_broker_restart_mid_run_loses_nothing(stack, workers):
    prefix = unique_prefix("broker")
    changes = _run(prefix, DOCS, seed=3)
    first, second = changes[:300], changes[300:]
    stack.publish(first)
    wait_for(lambda: _indexed(stack, prefix) >= 30, 180, interval_s=0.05,
             what="the run to be under way")
    stack.restart_kafka()
    stack.publish(second)
    stack.wait_indexed({c.doc_id: 1 for c in changes}, timeout_s=300)
    _assert_clean_table(stack, changes)
    for name in ("ingest", "embedder"):
        workers.wait_joined(name)  # still alive and in their groups after the restart
