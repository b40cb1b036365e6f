"""Data cards and snapshot ids: deterministic, content-addressed, readable."""

from __future__ import annotations

import json

import pytest

from services.common.pii_scrub import DEFAULT_POLICY
from services.finetune.datacard import CardRow, build_card, card_markdown, snapshot_id_for

pytestmark = pytest.mark.unit


def _row(i: int, source: str = "kb", privacy: str = "internal", license: str | None = "CC0",  # noqa: A002
         tags: tuple[str, ...] = ("faq",)) -> CardRow:
    return CardRow(f"id{i}", [{"role": "user", "content": f"question {i} here"},
                              {"role": "assistant", "content": f"answer {i} [1]."}],
                   source, license, privacy, "alice", tags)


ROWS = [_row(0), _row(1, source="system", privacy="public", license=None, tags=()), _row(2)]
PII = {"found": {"PERSON": 2}, "redacted": {"PERSON": 1}, "examples_changed": 1}


def _card(rows):
    sid = snapshot_id_for(rows)
    return build_card(sid, rows, filter={"sources": [], "tags": [], "max_privacy": None},
                      pii=PII, pii_policy=DEFAULT_POLICY.describe())


def test_same_rows_same_id_and_byte_identical_card():
    first, second = _card(ROWS), _card(list(ROWS))
    assert first["snapshot_id"] == second["snapshot_id"]
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert card_markdown(first) == card_markdown(second)


def test_id_changes_with_content_and_order_but_not_with_metadata():
    base = snapshot_id_for(ROWS)
    edited = [ROWS[0], ROWS[1], CardRow("id2", [{"role": "user", "content": "question 2 here"},
                                                {"role": "assistant", "content": "other"}],
                                        "kb", "CC0", "internal", "alice", ("faq",))]
    assert snapshot_id_for(edited) != base
    assert snapshot_id_for(list(reversed(ROWS))) != base
    relabelled = [CardRow(r.example_id, r.messages, "elsewhere", "MIT", "restricted", "bob", ())
                  for r in ROWS]
    assert snapshot_id_for(relabelled) == base  # the id is the training data, nothing else
    assert len(base) == 64


def test_card_counts_governance_fields_and_pii():
    card = _card(ROWS)
    assert card["n_examples"] == 3
    assert card["sources"] == {"kb": 2, "system": 1}
    assert card["licenses"] == {"CC0": 2, "(none)": 1}
    assert card["privacy_classes"] == {"internal": 2, "public": 1}
    assert card["tags"] == {"faq": 2}
    assert card["reviewers"] == {"alice": 3}
    assert card["pii"]["found"] == {"PERSON": 2}
    assert card["answer_words"]["max"] == 3
    assert "created" not in json.dumps(card)  # nothing run-dependent


def test_markdown_shows_the_tables():
    text = card_markdown(_card(ROWS))
    assert text.startswith("# Data card: snapshot `")
    assert "| kb | 2 |" in text
    assert "| PERSON | 2 | 1 |" in text
    assert "| public | 1 |" in text
