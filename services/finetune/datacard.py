"""The data card of a snapshot: what an adapter was trained on, as data and as Markdown.

Counts by source, licence, privacy class, tag and reviewer, PII findings per entity type (found
and redacted), sizes of prompts and answers, and the filter that selected the examples. The card
holds no timestamps or other run-dependent values: the same examples under the same filter give
the same card, byte for byte, so the card can be compared and hashed like the data it describes.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.finetune.examples import content_hash

CARD_VERSION = 1


@dataclass(frozen=True)
class CardRow:
    """One example as the card sees it (its scrubbed messages and its governance fields)."""

    example_id: str
    messages: Sequence[Mapping[str, str]]
    source: str
    license: str | None
    privacy_class: str
    reviewer: str | None
    tags: Sequence[str]


def snapshot_id_for(rows: Sequence[CardRow]) -> str:
    """Content hash of the scrubbed conversations, in order: same data, same snapshot."""
    return content_hash([[dict(m) for m in row.messages] for row in rows])


def _counts(values: Sequence[str | None]) -> dict[str, int]:
    counter = Counter(v if v else "(none)" for v in values)
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _words(text: str) -> int:
    return len(text.split())


def _stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0, "max": 0, "mean": 0.0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "mean": round(statistics.fmean(values), 1)}


def build_card(snapshot_id: str, rows: Sequence[CardRow], *, filter: Mapping[str, Any],  # noqa: A002
               pii: Mapping[str, Any], pii_policy: Mapping[str, Any]) -> dict[str, Any]:
    prompt_words = [sum(_words(m["content"]) for m in row.messages[:-1]) for row in rows]
    answer_words = [_words(row.messages[-1]["content"]) for row in rows]
    return {
        "card_version": CARD_VERSION,
        "snapshot_id": snapshot_id,
        "hash": "sha256 of the canonical JSON of the scrubbed messages, in snapshot order",
        "n_examples": len(rows),
        "filter": dict(filter),
        "review": "only examples with review_status=approved are included",
        "sources": _counts([r.source for r in rows]),
        "licenses": _counts([r.license for r in rows]),
        "privacy_classes": _counts([r.privacy_class for r in rows]),
        "reviewers": _counts([r.reviewer for r in rows]),
        "tags": _counts([t for r in rows for t in r.tags]),
        "turns": _counts([str(len(r.messages)) for r in rows]),
        "with_system_prompt": sum(1 for r in rows if r.messages[0]["role"] == "system"),
        "prompt_words": _stats(prompt_words),
        "answer_words": _stats(answer_words),
        "pii": dict(pii),
        "pii_policy": dict(pii_policy),
    }


def _table(title: str, counts: Mapping[str, int]) -> list[str]:
    lines = [f"| {title} | examples |", "|---|---:|"]
    lines += [f"| {key} | {value} |" for key, value in counts.items()] or ["| (none) | 0 |"]
    return lines + [""]


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as a human reads it (stored with the snapshot and logged to MLflow)."""
    pii = card.get("pii", {})
    found, redacted = pii.get("found", {}), pii.get("redacted", {})
    lines = [
        f"# Data card: snapshot `{card['snapshot_id'][:16]}`",
        "",
        f"- Snapshot id: `{card['snapshot_id']}` ({card['hash']})",
        f"- Examples: {card['n_examples']} ({card['review']})",
        f"- Filter: `{dict(card['filter'])}`",
        f"- Prompt words: {card['prompt_words']}; answer words: {card['answer_words']}",
        f"- With a system prompt: {card['with_system_prompt']}",
        "",
        "## Sources", "", *_table("source", card["sources"]),
        "## Licences", "", *_table("licence", card["licenses"]),
        "## Privacy classes", "", *_table("privacy class", card["privacy_classes"]),
        "## Reviewers", "", *_table("reviewer", card["reviewers"]),
        "## Tags", "", *_table("tag", card["tags"]),
        "## PII findings", "",
        f"Policy: `{card['pii_policy']}`. Examples changed by redaction: "
        f"{pii.get('examples_changed', 0)}.", "",
        "| entity type | found | redacted |", "|---|---:|---:|",
    ]
    entities = sorted(set(found) | set(redacted))
    lines += [f"| {e} | {found.get(e, 0)} | {redacted.get(e, 0)} |" for e in entities] or [
        "| (none) | 0 | 0 |"]
    return "\n".join(lines) + "\n"
