"""Where in the passages an answer may be copied from: the sentences about the question.

Left to choose any span, a 135M model copies the start of whichever sentence its language
prior likes ("The ..."), not the answer. Two old reading-comprehension habits narrow the choice
before the model picks: the answer lies in a sentence that shares the question's rarer words
(sentence selection by IDF-weighted overlap), and it is not one of the question's own words
(a span never runs through them, so "Thomas Edison founded the company" can only yield
"Thomas Edison"). The model still chooses the span, the passage and whether to answer; this
only removes spans no reader would give.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

_STOPWORDS_TEXT = """
a an the and or but if then of to in on at by for with from as into over under about after
before between through during is are was were be been being am do does did have has had it its
this that these those there here which who whom whose what when where why how i me my we our us
you your he him his she her they them their not no nor so than too very can could should would
may might must will shall also just only some any all most more many much such own same other
each both few one s t name named called type kind year years"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def stem(word: str) -> str:
    """A crude stem (lower case, first six letters), so "founded" meets "founder"."""
    return word.lower()[:6]


def question_words(question: str) -> frozenset[str]:
    """Stems of the question's content words."""
    return frozenset(stem(w) for w in _WORD.findall(question) if w.lower() not in STOPWORDS)


def sentences(text: str) -> list[tuple[int, int]]:
    """Character ranges of the text's sentences (a full stop followed by a capital or digit)."""
    ranges, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        ranges.append((start, match.start()))
        start = match.end()
    ranges.append((start, len(text)))
    return [(a, b) for a, b in ranges if text[a:b].strip()]


@dataclass(frozen=True)
class Focus:
    """Per passage, the character ranges an answer may be copied from."""

    ranges: tuple[tuple[tuple[int, int], ...], ...]


def focus(question: str, passages: Sequence[str], keep: int = 2) -> Focus:
    """The ``keep`` sentences (over all passages) sharing the most IDF-weighted question words
    (none that shares no word); every sentence when the question shares no word with any."""
    wanted = question_words(question)
    split = [sentences(text) for text in passages]
    bags = [[frozenset(stem(w) for w in _WORD.findall(text[a:b])) for a, b in ranges]
            for text, ranges in zip(passages, split, strict=True)]
    total = sum(len(b) for b in bags) or 1
    df = {w: sum(w in bag for p in bags for bag in p) for w in wanted}
    idf = {w: math.log(1 + total / df[w]) for w in wanted if df[w]}
    # fsum: exact whatever the set's order, which follows the process's string hashing; a
    # plain sum broke exact ties differently from one process to the next
    scored = [(math.fsum(idf.get(w, 0.0) for w in bag & wanted), p, s)
              for p, passage_bags in enumerate(bags) for s, bag in enumerate(passage_bags)]
    if not any(score > 0 for score, _, _ in scored):
        return Focus(tuple(tuple(r) for r in split))
    best = sorted((t for t in scored if t[0] > 0), key=lambda t: (-t[0], t[1], t[2]))[:keep]
    chosen = {(p, s) for _, p, s in best}
    return Focus(tuple(tuple(r for s, r in enumerate(ranges) if (p, s) in chosen)
                       for p, ranges in enumerate(split)))


def word_at(text: str, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """The word (lower case) each token belongs to, "" for punctuation and spaces."""
    owner: dict[int, str] = {}
    for match in _WORD.finditer(text):
        word = match.group(0).lower()
        owner.update(dict.fromkeys(range(match.start(), match.end()), word))
    return [owner.get(_first_char(text, a, b), "") for a, b in offsets]


def sentence_starts(text: str, offsets: Sequence[tuple[int, int]]) -> list[bool]:
    """Whether each token is the first of a sentence (a span may start there, not cross it)."""
    firsts = {a for a, _ in sentences(text)}
    return [_first_char(text, a, b) in firsts for a, b in offsets]


def inside(text: str, ranges: Sequence[tuple[int, int]],
           offsets: Sequence[tuple[int, int]]) -> list[bool]:
    """Whether each token (by its first non-space character) lies in one of the ranges."""
    firsts = [_first_char(text, a, b) for a, b in offsets]
    return [any(a <= first < b for a, b in ranges) for first in firsts]


def _first_char(text: str, a: int, b: int) -> int:
    piece = text[a:b]
    return a + len(piece) - len(piece.lstrip())
