"""The supervision set in real Postgres: idempotent import, review, PII-scrubbed snapshots with
stable ids, system pairs from stored evaluation results, and migration 0006 down and up.

Each test uses its own source name, so tests (and other suites sharing the database) never see
each other's examples in a snapshot."""

from __future__ import annotations

import json
import uuid

import pytest
from alembic import command
from sqlalchemy import text

from services.common import migrate
from services.common.evaluation import store
from services.common.evaluation.models import CaseResult
from services.common.pii_scrub import ScrubStats, scrub_text
from services.finetune import supervision
from services.finetune.examples import ChatExample, read_jsonl

pytestmark = pytest.mark.integration


def _query(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).scalars())


def _source() -> str:
    """A fresh source name the PII scrubber leaves alone: about one random hex name in 200
    reads as a person or a licence number ("test-ce89a342bf", "test-fa4012504d"), which would
    change an example the tests count as PII-free."""
    while True:
        source = f"test-{uuid.uuid4().hex[:10]}"
        question = f"Where is office 0 of {source}?"
        if scrub_text(question, "internal", ScrubStats()) == question:
            return source


def _lines(source: str) -> list[str]:
    return [
        json.dumps({"instruction": f"Where is office {i} of {source}?",
                    "output": f"In building {i} [1]."})
        for i in range(3)
    ] + [
        json.dumps({"messages": [
            {"role": "user", "content": "Who is the contact for billing?"},
            {"role": "assistant", "content": f"Write to jane.doe@example.com or call "
                                             f"+1 212 555 0199 ({source})."}]}),
        "{oops",
    ]


def _import(engine, tmp_path, source, **kwargs):
    path = tmp_path / f"{source}.jsonl"
    path.write_text("\n".join(_lines(source)) + "\n")
    good, bad = read_jsonl(path)
    return supervision.import_examples(engine, good, source=source, file=str(path),
                                       **kwargs), bad


def test_import_is_idempotent_and_records_lineage(stack, tmp_path):
    source = _source()
    first, bad = _import(stack.engine, tmp_path, source, license="CC0")
    again, _ = _import(stack.engine, tmp_path, source, license="CC0")
    assert len(first.added) == 4 and not first.existing
    assert not again.added and sorted(again.existing) == sorted(first.added)
    assert [e.line for e in bad] == [5]
    rows = supervision.list_examples(stack.engine, source=source)
    assert len(rows) == 4
    assert {r.review_status for r in rows} == {"pending"}
    assert sorted(r.lineage["line"] for r in rows) == [1, 2, 3, 4]
    assert all(r.lineage["file"].endswith(f"{source}.jsonl") for r in rows)
    assert all(r.license == "CC0" and r.privacy_class == "internal" for r in rows)
    assert all(r.example_id == r.example.example_id for r in rows)


def test_only_approved_examples_reach_a_snapshot(stack, tmp_path):
    source = _source()
    report, _ = _import(stack.engine, tmp_path, source)
    ids = sorted(report.added)
    with pytest.raises(supervision.SupervisionError, match="no approved examples"):
        supervision.create_snapshot(stack.engine, sources=[source])
    supervision.review(stack.engine, [ids[0][:12], ids[1]], "approved", "alice", "looks right")
    supervision.review(stack.engine, [ids[2]], "rejected", "bob", "wrong office")
    with pytest.raises(supervision.SupervisionError, match="already approved"):
        supervision.review(stack.engine, [ids[0]], "approved", "carol")
    snap = supervision.create_snapshot(stack.engine, sources=[source])
    assert snap.n_examples == 2
    assert snap.card["reviewers"] == {"alice": 2}
    assert snap.card["sources"] == {source: 2}
    _, examples = supervision.load_snapshot(stack.engine, snap.snapshot_id)
    stored_ids = _query(stack.engine, "SELECT example_id FROM sft_snapshot_examples "
                        "WHERE snapshot_id = :s ORDER BY position", s=snap.snapshot_id)
    assert stored_ids == sorted(ids[:2])
    assert all(isinstance(e, ChatExample) for e in examples)
    approved = supervision.get_example(stack.engine, ids[0])
    assert (approved.reviewer, approved.review_note) == ("alice", "looks right")
    assert approved.reviewed_at is not None


def test_pii_is_redacted_in_the_snapshot_not_in_the_store(stack, tmp_path):
    source = _source()
    report, _ = _import(stack.engine, tmp_path, source, approved_by="alice")
    snap, examples = supervision.load_snapshot(
        stack.engine, supervision.create_snapshot(stack.engine, sources=[source]).snapshot_id)
    contact = next(e for e in examples if "billing" in e.messages[0]["content"])
    answer = contact.target
    assert "jane.doe@example.com" not in answer and "<EMAIL_ADDRESS>" in answer
    assert "555 0199" not in answer  # Presidio may call it a phone or an NHS number
    assert answer.count("<") == 2
    assert snap.card["pii"]["redacted"]["EMAIL_ADDRESS"] == 1
    assert snap.card["pii"]["examples_changed"] == 1
    assert "| EMAIL_ADDRESS | 1 | 1 |" in snap.card_markdown
    original = [r for r in supervision.list_examples(stack.engine, source=source)
                if "billing" in r.messages[0]["content"]][0]
    assert "jane.doe@example.com" in original.messages[-1]["content"]  # the source row is kept
    assert len(report.added) == 4


def test_snapshot_id_is_stable_and_follows_the_data(stack, tmp_path):
    source = _source()
    _import(stack.engine, tmp_path, source, approved_by="alice")
    first = supervision.create_snapshot(stack.engine, sources=[source])
    second = supervision.create_snapshot(stack.engine, sources=[source])
    assert first.snapshot_id == second.snapshot_id
    assert first.card == second.card and first.card_markdown == second.card_markdown
    count = _query(stack.engine, "SELECT count(*) FROM sft_snapshot_examples "
                   "WHERE snapshot_id = :s", s=first.snapshot_id)
    assert count == [4]  # created twice, stored once
    supervision.add_example(stack.engine, ChatExample(messages=[
        {"role": "user", "content": f"One more for {source}?"},
        {"role": "assistant", "content": "Yes [1]."}]), source=source, approved_by="alice")
    third = supervision.create_snapshot(stack.engine, sources=[source])
    assert third.snapshot_id != first.snapshot_id and third.n_examples == 5
    restricted = supervision.create_snapshot(stack.engine, sources=[source],
                                             max_privacy="internal")
    assert restricted.snapshot_id == third.snapshot_id
    with pytest.raises(supervision.SupervisionError, match="no approved examples"):
        supervision.create_snapshot(stack.engine, sources=[source], max_privacy="public")


def test_system_pairs_from_a_stored_evaluation_run(stack):
    from services.common.prompting.prompts import load_template
    from services.finetune.system_pairs import candidates

    run_id = f"test-{uuid.uuid4().hex[:12]}"
    store.create_run(stack.engine, run_id, "t.jsonl", "ab" * 32, {}, 3)
    base = {"run_id": run_id, "expected": "answer", "answers": ["forty-two"],
            "question": "What is the answer?"}
    good = CaseResult(**base, case_id="good", answer="It is forty-two [3].",
                      cited_doc_ids=["d3"], contexts=["The answer is forty-two."])
    poor = CaseResult(**base, case_id="poor", answer="Blue [1].", cited_doc_ids=["d1"],
                      contexts=["Blue things."])
    refused = CaseResult(**base, case_id="refused", answer="", status="refused")
    store.record_result(stack.engine, good, {"token_f1": 1.0, "exact_match": 0.0})
    store.record_result(stack.engine, poor, {"token_f1": 0.0})
    store.record_result(stack.engine, refused, {"token_f1": None})
    stored = store.load_results(stack.engine, run_id)
    found, skipped = candidates(((s.result, s.metrics) for s in stored), load_template(),
                                min_f1=0.5, run_id=run_id)
    assert [c.lineage["case_id"] for c in found] == ["good"]
    assert sorted(s.case_id for s in skipped) == ["poor", "refused"]
    example = found[0].example
    assert example.target == "It is forty-two [1]."  # renumbered with the passages
    assert "[1] d3 (d3)\nThe answer is forty-two." in example.messages[1]["content"]
    source = _source()
    assert supervision.add_example(stack.engine, example, source=source,
                                   lineage=found[0].lineage)
    assert not supervision.add_example(stack.engine, example, source=source)
    [row] = supervision.list_examples(stack.engine, source=source)
    assert row.review_status == "pending" and row.lineage["run_id"] == run_id


def test_migration_0006_goes_down_and_up(stack):
    config = migrate.alembic_config(stack.settings.sqlalchemy_url)
    command.downgrade(config, "0005")
    try:
        tables = _query(stack.engine, "SELECT count(*) FROM pg_tables "
                        "WHERE tablename LIKE 'sft_%'")
        assert tables == [0]
    finally:
        command.upgrade(config, "head")
    tables = _query(stack.engine, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sft_%'")
    assert tables == [3]
