"""Training examples of the default answer adapter, as token ids, exactly as serving sees them.

An example is a question and three passages, reduced to the sentences about the question
(:mod:`evidence_prompt`), rendered with the tokenizer's chat template and encoded the way
:class:`LocalEngine` encodes a prompt. The target is the token sequence the constrained decoder
would have to write: the answer's tokens *as they are in the passage* (so the first one keeps
its leading space, the way the automaton offers it), the passage's marker `` [n]`` and end of
turn; or the "don't know" text and end of turn. Every answerable target is replayed through the
evidence automaton of that very prompt (:func:`evidence.walk`), so the adapter is only ever
taught answers it can give at serving.

The passages are retrieval top 3 as the rag worker hands it over (``distractors="nearest"``,
the recipe's default): the paragraphs of the training articles a BM25 ranking of the question
puts nearest, in rank order, the question's own paragraph at its rank (moved to third when it
ranks below). Their sentences share the question's words, and the first passage is usually the
right one. The first recipes drew the two others at random from the article, in a seeded order
(``"random"``, as ``benchmarks/answers_data.py`` simulates retrieval); an adapter trained so
never learnt to choose among near misses and read worse through the real path.

Unanswerable examples come in two kinds: SQuAD 2.0's unanswerable questions (written to look
answerable from their paragraph) with that paragraph among the three, and SQuAD 1.1 questions
whose own paragraph is left out (three other paragraphs of the article, none containing the
answer). Their share is kept moderate: the adapter must learn "don't know" without saying it on
answerable questions.

Articles are split once, here (:data:`SPLIT`): training articles, calibration articles (the
abstention threshold is chosen on them) and held-out articles (the benchmark reports on them
and nothing is tuned there).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from services.common.generation.evidence import Fixed, walk
from services.common.generation.evidence_prompt import (
    FOCUS_SENTENCES,
    compact_messages,
    compact_passages,
)
from services.common.generation.evidence_tokens import build_constraint
from services.finetune.chat_data import IGNORE_INDEX, TokenizedExample

_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
DISTRACTORS = ("random", "nearest")  # how the other passages are chosen (DataSpec.distractors)
MAX_SPAN_TOKENS = 10  # as Extractive.max_span_tokens: longer answers cannot be served
# Spans may run through the question's words ("World Health Organization" for "which
# organization ..."), never start with one; the data card records it and serving follows it.
QUESTION_WORDS_INSIDE = True
# Article titles per part. SQuAD 1.1 (11 articles of the train set) gives answerable questions,
# SQuAD 2.0 (5 articles of the dev set) answerable and unanswerable ones.
SPLIT: dict[str, dict[str, tuple[str, ...]]] = {
    "squad_v11": {
        "train": ("2008_Sichuan_earthquake", "Beyoncé", "Frédéric_Chopin", "IPod",
                  "Sino-Tibetan_relations_during_the_Ming_dynasty", "University_of_Notre_Dame"),
        "calibration": ("Spectre_(2015_film)", "The_Legend_of_Zelda:_Twilight_Princess"),
        "heldout": ("Antibiotics", "Genocide", "Montana"),
    },
    "squad_v2": {
        "train": ("Computational_complexity_theory", "Southern_California"),
        "calibration": ("Sky_(United_Kingdom)",),
        "heldout": ("Normans", "Victoria_(Australia)"),
    },
}


@dataclass(frozen=True)
class Question:
    """One question with its simulated retrieval (``(n, text)`` passages)."""

    qid: str
    article: str
    question: str
    answers: tuple[str, ...]  # empty: the passages do not hold the answer
    passages: tuple[tuple[int, str], ...]
    gold_n: int | None  # the question's own paragraph, None when it was left out
    kind: str  # "answerable", "squad2_unanswerable", "gold_left_out"


@dataclass(frozen=True)
class DataSpec:
    """How many examples of each kind; every draw is seeded."""

    # Twice the first recipe's answerable questions (975) and every unanswerable one of the
    # training articles (205 before): held-out F1 0.536 -> 0.553, correct "don't know" 0.12
    # -> 0.27 (false 0.12 -> 0.15), in one run beside the adapter it replaced.
    answerable: int = 1950
    squad2_unanswerable: int = 365
    gold_left_out: int = 200
    seed: int = 20261202
    # sentences of the compact prompt (and spans); recorded in the card, serving keeps to it
    focus_sentences: int = FOCUS_SENTENCES
    # The other passages: "random" paragraphs of the article (the first recipes), or the
    # "nearest" by BM25. Nearest, through the real path on the calibration part at the margin
    # holding false "don't know" to 0.10: F1 0.377 -> 0.420 beside the random recipe's adapter.
    distractors: str = "nearest"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def questions(path: Path, titles: Iterable[str], seed: int, *,
              gold_left_out: bool = False, distractors: str = "random") -> list[Question]:
    """Every question of the named articles with three passages: its own paragraph and two
    others (or, with ``gold_left_out``, three others that do not contain any of its answers;
    answerable questions only). ``distractors``: "random" paragraphs of its article, in a
    seeded order, or the "nearest" paragraphs of all the named articles, in rank order."""
    if distractors not in DISTRACTORS:
        raise ValueError(f"unknown distractors {distractors!r}: one of {', '.join(DISTRACTORS)}")
    wanted = set(titles)
    rng = random.Random(seed)
    articles = [a for a in json.loads(path.read_text(encoding="utf-8"))["data"]
                if a["title"] in wanted]
    pool = [p["context"] for a in articles for p in a["paragraphs"]]
    ranker = _ranker(tuple(pool)) if distractors == "nearest" else None
    out: list[Question] = []
    base = 0
    for article in articles:
        paragraphs = article["paragraphs"]
        for index, paragraph in enumerate(paragraphs):
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", [])))
                if gold_left_out and (impossible or not answers):
                    continue
                if ranker is not None:
                    texts, gold = _nearest(ranker, qa["question"], base + index, answers,
                                           gold_left_out)
                else:
                    texts, gold = _random(rng, paragraphs, index, answers, gold_left_out)
                passages = tuple(enumerate(texts, start=1))
                gold = None if impossible else gold
                kind = ("gold_left_out" if gold_left_out else
                        "squad2_unanswerable" if impossible else "answerable")
                out.append(Question(str(qa["id"]), article["title"], qa["question"],
                                    () if gold is None else answers, passages, gold, kind))
        base += len(paragraphs)
    return out


def _holds(text: str, answers: Sequence[str]) -> bool:
    return any(a.lower() in text.lower() for a in answers)


def _random(rng: random.Random, paragraphs: Sequence[dict[str, Any]], index: int,
            answers: Sequence[str], gold_left_out: bool) -> tuple[list[str], int | None]:
    """Passages drawn from the article (the first recipe's draw, kept bit for bit)."""
    others = [i for i in range(len(paragraphs)) if i != index]
    if gold_left_out:
        others = [i for i in others if not _holds(paragraphs[i]["context"], answers)]
        chosen = rng.sample(others, min(3, len(others)))
    else:
        chosen = [index, *rng.sample(others, min(2, len(others)))]
    rng.shuffle(chosen)
    gold = None if gold_left_out else chosen.index(index) + 1
    return [paragraphs[i]["context"] for i in chosen], gold


class _Ranker:
    """BM25 over the pool of paragraphs the distractors are drawn from."""

    def __init__(self, texts: Sequence[str]) -> None:
        from rank_bm25 import BM25Okapi

        self.texts = list(texts)
        self.bm25 = BM25Okapi([_words(t) for t in self.texts])

    def ranked(self, question: str) -> list[int]:
        scores = self.bm25.get_scores(_words(question))
        return sorted(range(len(self.texts)), key=lambda i: (-scores[i], i))


@lru_cache(maxsize=2)
def _ranker(pool: tuple[str, ...]) -> _Ranker:
    """One index per pool: a build asks the same articles twice (kept, then left out)."""
    return _Ranker(pool)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _nearest(ranker: _Ranker, question: str, own: int, answers: Sequence[str],
             gold_left_out: bool) -> tuple[list[str], int | None]:
    """The top three of the ranking; the own paragraph kept at its rank (third when it ranks
    lower), or, with ``gold_left_out``, left out with every paragraph holding an answer."""
    order = ranker.ranked(question)
    if gold_left_out:
        top = list(islice((i for i in order
                           if i != own and not _holds(ranker.texts[i], answers)), 3))
        return [ranker.texts[i] for i in top], None
    top = order[:3]
    if own not in top:
        top = [*top[:2], own]
    return [ranker.texts[i] for i in top], top.index(own) + 1


def prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """What ``LocalEngine.chat_prompt`` + ``encode`` give for these messages."""
    prompt = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                           tokenize=False)
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def end_of_turn(tokenizer: Any, end_ids: frozenset[int]) -> int:
    token = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return int(token) if isinstance(token, int) and token in end_ids else min(end_ids)


def encode_example(tokenizer: Any, end_ids: frozenset[int], q: Question,
                   no_answer: str, focus_sentences: int = FOCUS_SENTENCES, *,
                   spaces_inside: bool = False) -> TokenizedExample | None:
    """The example's ids and labels (loss on the target only), or None when the answer is not
    in the kept sentences or the automaton could not produce it (never a wrong label).

    ``spaces_inside``: an answer may hold whitespace-only tokens between its words ("shelf 3"
    is " shelf", " ", "3"). The shipped adapter's recipe skips those answers, and its rebuild
    must give the same ids, so only a domain job (:mod:`answer_examples`) asks for them."""
    compact = compact_passages(q.question, q.passages, focus_sentences)
    if not compact:
        return None
    messages = compact_messages(q.question, compact, no_answer)
    constraint = build_constraint(tokenizer, compact, no_answer, end_ids, MAX_SPAN_TOKENS,
                                  q.question, focus_sentences, QUESTION_WORDS_INSIDE)
    end = end_of_turn(tokenizer, end_ids)
    if q.gold_n is None:
        target = [*constraint.no_answer, end]
    else:
        found = _answer_tokens(tokenizer, compact, constraint, q, spaces_inside)
        if found is None:
            return None
        target = [*found, end]
    ids = prompt_ids(tokenizer, messages)
    return TokenizedExample(input_ids=ids + target,
                            labels=[IGNORE_INDEX] * len(ids) + target, truncated=False)


def _answer_tokens(tokenizer: Any, compact: Sequence[tuple[int, str]], constraint: Any,
                   q: Question, spaces_inside: bool = False) -> list[int] | None:
    """The gold passage's tokens covering an answer, then its marker; replayed through the
    automaton (which also checks the span may be written: focus, question words, length)."""
    p = next((i for i, (n, _) in enumerate(compact) if n == q.gold_n), None)
    if p is None:
        return None
    text = compact[p][1]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
    for answer in writable_forms(q.answers):
        at = text.find(answer)
        if at < 0:
            continue
        stop = at + len(answer)
        # a whitespace-only token (SmolLM2 writes " 1943" as " ", "1", "9", ...) is not part
        # of the answer: counted in, every number began with a token no span may start with
        inside = [i for i, (a, b) in enumerate(offsets)
                  if text[a:b].strip() and at <= a + (len(text[a:b]) - len(text[a:b].lstrip()))
                  < stop]
        if inside and spaces_inside:  # what lies between the answer's words is the answer's
            inside = list(range(inside[0], inside[-1] + 1))
        if not inside or inside != list(range(inside[0], inside[-1] + 1)):
            continue
        target = [*ids[inside[0]:inside[-1] + 1], *constraint.passages[p].marker]
        state = walk(constraint, [*target, min(constraint.end_ids)])
        marker_len = len(constraint.passages[p].marker)
        if any(isinstance(t, Fixed) and t.kind == "marker" and t.p == p
               and t.j == marker_len + 1 for t in state.threads):
            return target
    return None


def writable_forms(answers: Sequence[str]) -> list[str]:
    """Each gold answer as given, then without a leading article: a span may not start with a
    stop word, and SQuAD's exact match drops articles, so "the Eiffel Tower" is taught as
    "Eiffel Tower" rather than skipped."""
    forms = [a.strip() for a in answers if a.strip()]
    stripped = [_LEADING_ARTICLE.sub("", a) for a in forms]
    return list(dict.fromkeys([*forms, *(a for a in stripped if a)]))


def build(tokenizer: Any, end_ids: frozenset[int], squad11: Path, squad2: Path, no_answer: str,
          spec: DataSpec) -> tuple[list[TokenizedExample], dict[str, Any]]:
    """The training examples (shuffled) and their counts, from the training articles only."""
    rng = random.Random(spec.seed)
    train11, train2 = SPLIT["squad_v11"]["train"], SPLIT["squad_v2"]["train"]
    how = spec.distractors
    pool = (questions(squad11, train11, spec.seed, distractors=how)
            + questions(squad2, train2, spec.seed, distractors=how))
    answerable = [q for q in pool if q.kind == "answerable"]
    impossible = [q for q in pool if q.kind == "squad2_unanswerable"]
    left_out = questions(squad11, train11, spec.seed + 1, gold_left_out=True, distractors=how)
    counts: dict[str, Any] = {}
    examples: list[TokenizedExample] = []
    for name, items, wanted in (("answerable", answerable, spec.answerable),
                                ("squad2_unanswerable", impossible, spec.squad2_unanswerable),
                                ("gold_left_out", left_out, spec.gold_left_out)):
        rng.shuffle(items)
        kept, skipped = 0, 0
        for q in items:
            if kept >= wanted:
                break
            encoded = encode_example(tokenizer, end_ids, q, no_answer, spec.focus_sentences)
            if encoded is None:
                skipped += 1
                continue
            examples.append(encoded)
            kept += 1
        counts[name] = {"available": len(items), "used": kept, "skipped": skipped}
    rng.shuffle(examples)
    counts["total"] = len(examples)
    digest = hashlib.sha256()
    for example in examples:  # a rebuild must give these very ids in this order
        digest.update(json.dumps([example.input_ids, example.labels]).encode())
    counts["examples_sha256"] = digest.hexdigest()
    counts["prompt_tokens_mean"] = round(
        sum(len(e.input_ids) - e.n_target_tokens for e in examples) / max(1, len(examples)), 1)
    return examples, counts
