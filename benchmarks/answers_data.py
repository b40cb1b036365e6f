"""Cases of the answers benchmark: a question, its three passages (retrieval top 3 simulated)
and its gold answers, split by article into a calibration part and a held-out part.

Retrieval is simulated as the gold paragraph plus two other paragraphs of the same article (the
hardest distractors a topic-level retriever returns), in a seeded random order, so the gold
passage is not always [1]. Answerable questions come from SQuAD 1.1 train articles, unanswerable
ones from SQuAD 2.0 dev (``is_impossible``; their paragraph is on topic but lacks the answer).
Articles, not questions, are split, so nothing tuned on calibration shares a paragraph with
what is reported.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.prompting.context_item import ContextItem


@dataclass(frozen=True)
class Case:
    qid: str
    article: str
    question: str
    answers: tuple[str, ...]  # empty for an unanswerable question
    passages: tuple[ContextItem, ...]
    gold_n: int  # citation number of the question's own paragraph

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def load_cases(path: Path, *, unanswerable: bool, seed: int) -> dict[str, list[Case]]:
    """Cases per article title: answerable ones (SQuAD 1.1 style) or, with ``unanswerable``,
    only the ``is_impossible`` questions of a SQuAD 2.0 file."""
    rng = random.Random(seed)
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    by_article: dict[str, list[Case]] = {}
    for article in data:
        title, paragraphs = article["title"], article["paragraphs"]
        cases = by_article.setdefault(title, [])
        for index, paragraph in enumerate(paragraphs):
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                if impossible != unanswerable:
                    continue
                answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", [])))
                if not unanswerable and not answers:
                    continue
                cases.append(_case(rng, title, paragraphs, index, qa, answers))
    return by_article


def _case(rng: random.Random, title: str, paragraphs: list[dict], index: int, qa: dict,
          answers: tuple[str, ...]) -> Case:
    others = [i for i in range(len(paragraphs)) if i != index]
    chosen = [index, *rng.sample(others, min(2, len(others)))]
    rng.shuffle(chosen)
    items = tuple(
        ContextItem(n=n, chunk_ids=(f"{title}#{i}",), doc_id=f"{title}#{i}", title=title,
                    uri=f"squad://{title}/{i}", text=paragraphs[i]["context"], score=1.0)
        for n, i in enumerate(chosen, start=1))
    return Case(qid=qa["id"], article=title, question=qa["question"],
                answers=() if qa.get("is_impossible") else answers, passages=items,
                gold_n=chosen.index(index) + 1)


def split_named(by_article: dict[str, list[Case]], calibration: Sequence[str],
                heldout: Sequence[str], per_part: tuple[int, int],
                seed: int) -> tuple[list[Case], list[Case]]:
    """(calibration, held_out) from the named articles (the answer adapter's split,
    ``services.finetune.answer_data.SPLIT``: its training articles are in neither part)."""
    rng = random.Random(seed)
    cal = [c for t in sorted(calibration) for c in by_article.get(t, [])]
    held = [c for t in sorted(heldout) for c in by_article.get(t, [])]
    return (rng.sample(cal, min(per_part[0], len(cal))),
            rng.sample(held, min(per_part[1], len(held))))


def split(by_article: dict[str, list[Case]], calibration_articles: int, per_part: tuple[int, int],
          seed: int) -> tuple[list[Case], list[Case]]:
    """(calibration, held_out): the first ``calibration_articles`` articles in sorted title
    order calibrate, the rest are held out; each part is a seeded sample of the sizes given."""
    titles = sorted(by_article)
    calibration = [c for t in titles[:calibration_articles] for c in by_article[t]]
    held_out = [c for t in titles[calibration_articles:] for c in by_article[t]]
    rng = random.Random(seed)
    return (rng.sample(calibration, min(per_part[0], len(calibration))),
            rng.sample(held_out, min(per_part[1], len(held_out))))
