"""The retrieval benchmark's data sets, read from SQuAD files by path (never copied in).

Why split by article: SQuAD paragraphs of one article share names, dates and vocabulary, and
its questions are written by the same annotators, so tuning on some questions of an article
and reporting on others leaks. The tune/held-out split is by article (``source``), chosen by a
hash of the title so it is fixed, balanced by chance rather than by choice, and independent of
file order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

TUNE, HELD_OUT, ALL = "tune", "held_out", "all"


@dataclass(frozen=True)
class Paragraph:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    text: str
    doc_id: str  # the gold paragraph
    article: str


@dataclass(frozen=True)
class DataSet:
    """An index (``paragraphs``) and its answerable questions in named parts."""

    name: str
    description: str
    paragraphs: tuple[Paragraph, ...]
    parts: dict[str, tuple[Question, ...]]


def load_squad(path: Path, prefix: str) -> tuple[list[Paragraph], list[Question]]:
    """Paragraphs as documents ``{prefix}{article}-{paragraph}`` (as ``customllm eval
    import-squad`` names them) and the answerable questions, each with its article."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    paragraphs: list[Paragraph] = []
    questions: list[Question] = []
    for ai, article in enumerate(data["data"]):
        title = str(article["title"])
        for pi, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"{prefix}{ai}-{pi}"
            paragraphs.append(Paragraph(doc_id, title.replace("_", " "), paragraph["context"]))
            questions += [Question(qa["question"], doc_id, title) for qa in paragraph["qas"]
                          if not qa.get("is_impossible", False)]
    return paragraphs, questions


def held_out_articles(titles: list[str]) -> set[str]:
    """Half of the articles (rounded down), the ones whose sha256(title) sorts first."""
    ordered = sorted(set(titles), key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    return set(ordered[: len(ordered) // 2])


def build_datasets(train: Path, dev: Path) -> list[DataSet]:
    """Data set 1: the ``train`` articles plus the ``dev`` paragraphs as distractors (no dev
    questions), split by article into tune and held-out. Data set 2: ``dev`` on its own, all
    questions held out (never tuned on)."""
    train_paragraphs, train_questions = load_squad(train, "train/")
    dev_paragraphs, dev_questions = load_squad(dev, "dev/")
    held = held_out_articles([q.article for q in train_questions])
    first = DataSet(
        name="squad11_train11_plus_distractors",
        description=(f"{train.name}: {len(train_paragraphs)} paragraphs + the "
                     f"{len(dev_paragraphs)} paragraphs of {dev.name} as distractors"),
        paragraphs=tuple(train_paragraphs + dev_paragraphs),
        parts={TUNE: tuple(q for q in train_questions if q.article not in held),
               HELD_OUT: tuple(q for q in train_questions if q.article in held)})
    second = DataSet(
        name="squad2_dev5",
        description=f"{dev.name}: {len(dev_paragraphs)} paragraphs on their own",
        paragraphs=tuple(dev_paragraphs), parts={ALL: tuple(dev_questions)})
    return [first, second]
