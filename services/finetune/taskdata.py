"""The measurable fine-tuning task: answer from numbered passages in the platform's own format.

Each example is exactly what the RAG worker sends the model: the ``default`` prompt template
(:mod:`services.common.prompting.prompts`) rendered over a few numbered context items ``[n]
title (uri)``, one of which (the gold passage) holds the answer, among distractor passages of
the same article, shuffled. The target is the short extractive answer followed by the gold
passage's marker, ``Denver Broncos [2].``; when the gold passage is left out (a share of the
examples) the target is the template's exact ``no_answer`` text. So an adapter trained on it
improves the real serving path, and the evaluation harness (citations, token F1, abstention)
measures the same thing.

Passages are sentence windows of a SQuAD paragraph (about the size of the ingest chunker's
chunks), which keeps examples short enough to train on two CPU cores in minutes. Train and
held-out are split **by article**, so no held-out passage was ever seen in training. For the
held-out article the harness's own test cases and documents come along
(:func:`services.common.evaluation.testsets.import_squad`), so the promotion gate can run the same
questions through the real query path.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.evaluation.models import EvalCase
from services.common.evaluation.testsets import import_squad, slug
from services.common.events import DocChange
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import PromptTemplate, load_template, render
from services.finetune.examples import ChatExample

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class TaskSpec:
    """How examples are drawn; every choice is seeded, so the same spec gives the same data."""

    n_train: int = 240
    n_heldout: int = 60
    heldout_articles: int = 1  # the last N articles of the file are held out
    passages: tuple[int, ...] = (2, 3)  # context sizes, drawn uniformly
    window_words: int = 60  # target size of a passage
    unanswerable_ratio: float = 0.15  # share of examples whose gold passage is left out
    seed: int = 13
    domain: str = "default"


@dataclass(frozen=True)
class TaskCase:
    """What a held-out example should get: its gold marker (None: abstain) and references."""

    case_id: str
    gold_n: int | None
    answers: tuple[str, ...]
    n_passages: int
    article: str


@dataclass
class TaskData:
    train: list[ChatExample]
    heldout: list[ChatExample]
    heldout_cases: list[TaskCase]
    eval_cases: list[EvalCase]  # the harness's cases for the held-out article(s)
    documents: list[DocChange]  # the held-out article(s)' paragraphs, to index for the harness
    no_answer: str
    train_articles: list[str] = field(default_factory=list)
    heldout_articles: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        abstain = sum(1 for c in self.heldout_cases if c.gold_n is None)
        return {"train": len(self.train), "heldout": len(self.heldout),
                "heldout_abstain": abstain, "train_articles": self.train_articles,
                "heldout_articles": self.heldout_articles, "eval_cases": len(self.eval_cases)}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def window(parts: Sequence[str], start: int, max_words: int) -> str:
    """Sentences from ``start`` on (at least one) until ``max_words`` would be exceeded."""
    chosen, words = [], 0
    for sentence in parts[start:]:
        n = len(sentence.split())
        if chosen and words + n > max_words:
            break
        chosen.append(sentence)
        words += n
    return " ".join(chosen)


def gold_window(context: str, answer_start: int, max_words: int) -> str:
    """A window holding the sentence the answer starts in, with one sentence before it when
    it fits (so the answer is not always at the window's start)."""
    parts = sentences(context)
    offset, index = 0, 0
    for i, sentence in enumerate(parts):
        found = context.find(sentence, offset)
        if found > answer_start:
            break
        index, offset = i, found
    start = index - 1 if index > 0 and len(
        (parts[index - 1] + " " + parts[index]).split()) <= max_words else index
    return window(parts, start, max_words)


def cited_numbers(answer: str) -> list[int]:
    return [int(m) for m in MARKER.findall(answer)]


def strip_markers(answer: str) -> str:
    return " ".join(MARKER.sub(" ", answer).split()).rstrip(" .")


def target_answer(answer: str, n: int) -> str:
    return f"{answer.strip().rstrip('.')} [{n}]."


def build_examples(articles: Sequence[dict[str, Any]], article_indexes: Sequence[int],
                   n: int, spec: TaskSpec, template: PromptTemplate, rng: random.Random
                   ) -> tuple[list[ChatExample], list[TaskCase]]:
    """Up to ``n`` examples from the answerable questions of the given articles."""
    pool = []
    for ai in article_indexes:
        for pi, paragraph in enumerate(articles[ai]["paragraphs"]):
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible") and qa.get("answers"):
                    pool.append((ai, pi, qa))
    rng.shuffle(pool)
    examples: list[ChatExample] = []
    cases: list[TaskCase] = []
    for ai, pi, qa in pool:
        if len(examples) >= n:
            break
        built = _one(articles, ai, pi, qa, spec, template, rng)
        if built is not None:
            examples.append(built[0])
            cases.append(built[1])
    return examples, cases


def _one(articles: Sequence[dict[str, Any]], ai: int, pi: int, qa: dict[str, Any],
         spec: TaskSpec, template: PromptTemplate, rng: random.Random
         ) -> tuple[ChatExample, TaskCase] | None:
    article = articles[ai]
    paragraph = article["paragraphs"][pi]
    answer = qa["answers"][0]
    answer_text = answer["text"].strip()
    gold = gold_window(paragraph["context"], int(answer["answer_start"]), spec.window_words)
    if answer_text.lower() not in gold.lower():
        return None  # the window missed the answer (odd sentence split): skip, never mislabel
    k = rng.choice(spec.passages)
    abstain = rng.random() < spec.unanswerable_ratio
    others = [i for i in range(len(article["paragraphs"])) if i != pi]
    rng.shuffle(others)
    distractors: list[tuple[int, str]] = []
    for oi in others:
        if len(distractors) >= (k if abstain else k - 1):
            break
        parts = sentences(article["paragraphs"][oi]["context"])
        text = window(parts, rng.randrange(len(parts)), spec.window_words)
        if answer_text.lower() not in text.lower():
            distractors.append((oi, text))
    passages = distractors if abstain else [*distractors, (pi, gold)]
    rng.shuffle(passages)
    title = article["title"].replace("_", " ")
    items = [ContextItem(n=i + 1, chunk_ids=(f"squad/{ai}-{p}",), doc_id=f"squad/{ai}-{p}",
                         title=title, uri=None, text=text, score=1.0)
             for i, (p, text) in enumerate(passages)]
    gold_n = None if abstain else next(i + 1 for i, (p, _) in enumerate(passages) if p == pi)
    target = template.no_answer if gold_n is None else target_answer(answer_text, gold_n)
    messages = [*render(template, qa["question"].strip(), items),
                {"role": "assistant", "content": target}]
    answers = tuple(dict.fromkeys(a["text"].strip() for a in qa["answers"]))
    return ChatExample(messages=messages), TaskCase(str(qa["id"]), gold_n, answers, len(items),
                                                    article["title"])


def build_task(data: dict[str, Any], spec: TaskSpec | None = None,
               squad_path: Path | None = None) -> TaskData:
    """SQuAD-format data → train / held-out examples, split by article (see module doc).
    With ``squad_path`` the harness's test cases and documents of the held-out articles are
    imported too (they need the file: ``import_squad`` records it in the lineage)."""
    spec = spec or TaskSpec()
    articles = data["data"]
    if len(articles) <= spec.heldout_articles:
        raise ValueError(f"need more than {spec.heldout_articles} articles to hold some out; "
                         f"the data has {len(articles)}")
    template = load_template(spec.domain)
    split = len(articles) - spec.heldout_articles
    train_idx, heldout_idx = list(range(split)), list(range(split, len(articles)))
    train, _ = build_examples(articles, train_idx, spec.n_train, spec, template,
                              random.Random(spec.seed))
    heldout, cases = build_examples(articles, heldout_idx, spec.n_heldout, spec, template,
                                    random.Random(spec.seed + 1))
    eval_cases: list[EvalCase] = []
    documents: list[DocChange] = []
    if squad_path is not None:
        all_cases, all_docs = import_squad(squad_path)
        held_tags = {slug(articles[i]["title"]) for i in heldout_idx}
        eval_cases = [c for c in all_cases if held_tags & set(c.tags)]
        held_prefixes = tuple(f"squad/{i}-" for i in heldout_idx)
        documents = [d for d in all_docs if d.doc_id.startswith(held_prefixes)]
    return TaskData(train=train, heldout=heldout, heldout_cases=cases, eval_cases=eval_cases,
                    documents=documents, no_answer=template.no_answer,
                    train_articles=[articles[i]["title"] for i in train_idx],
                    heldout_articles=[articles[i]["title"] for i in heldout_idx])
