"""From passages' text to an :class:`EvidenceConstraint`: tokens, word boundaries, aliases.

Word boundaries come from the tokens' own strings (byte-level BPE writes a leading space as
``Ġ`` and a newline as ``Ċ``): a span starts where a word starts and stops where one ends, so
an answer is never half a word ("orman" of "Normans"). Passages are tokenized on their own, as
the prompt gives them; the marker is tokenized as it follows an answer (`` [n]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from services.common.generation.evidence import EvidenceConstraint, Passage
from services.common.generation.evidence_focus import (
    STOPWORDS,
    focus,
    inside,
    question_words,
    sentence_starts,
    stem,
    word_at,
)

SPACE_MARKS = ("Ġ", "Ċ", "ĉ", "▁")  # byte-level BPE space, newline, tab; sentencepiece space


def is_word_start(pieces: Sequence[str], i: int) -> bool:
    """``pieces[i]`` begins a word: first token, a space-led token with text, or the token after
    whitespace or punctuation (digits after a bare space; "1860" in "1850-1860")."""
    if i == 0:
        return _has_text(pieces[i])
    piece = pieces[i]
    if piece[:1] in SPACE_MARKS:
        return _has_text(piece)
    previous = pieces[i - 1]
    return _has_text(piece) and (previous[-1:] in SPACE_MARKS or not previous[-1:].isalnum())


def is_word_end(pieces: Sequence[str], i: int) -> bool:
    """A span ``pieces[start:i]`` may stop before ``pieces[i]``: at the end, or before a token
    that does not go on with the same word (space-led, or not starting with a letter/digit)."""
    if i == 0:
        return False
    if not _has_text(pieces[i - 1]):
        return False  # never end on bare whitespace
    if i == len(pieces):
        return True
    first = pieces[i][:1]
    return first in SPACE_MARKS or not first.isalnum()


def _has_text(piece: str) -> bool:
    return bool(piece.strip("".join(SPACE_MARKS)).strip())


def build_constraint(tokenizer: Any, passages: Sequence[tuple[int, str]], no_answer: str,
                     end_ids: frozenset[int], max_span: int = 32, question: str | None = None,
                     focus_sentences: int = 2,
                     question_words_inside: bool = False) -> EvidenceConstraint:
    """The automaton for these ``(n, text)`` passages, the template's "don't know" text and
    the model's end-of-turn ids. With ``question``, spans are kept to the ``focus_sentences``
    sentences about it, never start with a stop word or one of the question's words, and never
    contain the question's words either unless ``question_words_inside``
    (:mod:`services.common.generation.evidence_focus`).

    ``question_words_inside`` is for the answer adapter, which learnt where an answer ends:
    one held-out answer in eight runs through a word of its question ("World Health
    Organization" asked as "which organization ..."), and the bare model needs the stricter
    rule so as not to echo the question back."""
    encode = _encoder(tokenizer)
    texts = [text for _, text in passages]
    kept = focus(question, texts, focus_sentences) if question else None
    asked = question_words(question) if question else frozenset()
    built = []
    for p, (n, text) in enumerate(passages):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(encoded["input_ids"]), list(encoded["offset_mapping"])
        pieces = tokenizer.convert_ids_to_tokens(ids)
        words = word_at(text, offsets)
        echoed = {i for i, word in enumerate(words) if word and stem(word) in asked}
        blocked = set() if question_words_inside else set(echoed)
        if kept is not None:
            blocked |= {i for i, ok in enumerate(inside(text, kept.ranges[p], offsets)) if not ok}
        no_start = blocked | echoed
        built.append(Passage(
            n=n, tokens=tuple(ids),
            starts=frozenset(i for i in range(len(ids)) if is_word_start(pieces, i)
                             and words[i] not in STOPWORDS and i not in no_start),
            ends=frozenset(i for i in range(1, len(ids) + 1) if is_word_end(pieces, i)),
            marker=tuple(encode(f" [{n}]")), blocked=frozenset(blocked),
            breaks=frozenset(i for i, first in enumerate(sentence_starts(text, offsets))
                             if first)))
    opener = {p.marker[0] for p in built if p.marker}
    return EvidenceConstraint(
        passages=tuple(built), no_answer=tuple(encode(no_answer)), end_ids=end_ids,
        aliases=_aliases(tokenizer, built), forbidden=frozenset(opener), max_span=max_span)


def _aliases(tokenizer: Any, passages: Sequence[Passage]) -> dict[int, int]:
    """Space-less twin of each space-led start token, where the vocabulary has one."""
    vocab = tokenizer.get_vocab()
    aliases: dict[int, int] = {}
    for passage in passages:
        for i in passage.starts:
            token = passage.tokens[i]
            piece = tokenizer.convert_ids_to_tokens(token)
            if piece[:1] in SPACE_MARKS and len(piece) > 1:
                twin = vocab.get(piece[1:])
                if twin is not None and twin != token:
                    aliases[int(twin)] = token
    return aliases


def _encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    return encode
