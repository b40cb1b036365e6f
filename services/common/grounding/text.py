"""Text helpers shared by the metrics: SQuAD answer normalization, tokens, sentence splitting
and abstention detection.

Everything here is pure and deterministic (no model, no locale dependence).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "ABSTENTION_PATTERNS",
    "STOPWORDS",
    "content_tokens",
    "is_abstention",
    "normalize_answer",
    "split_sentences",
    "strip_citation_markers",
    "tokens",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in "$+<=>^`|~"


def normalize_answer(s: str | None) -> str:
    """SQuAD normalization, in SQuAD's order: lower-case, remove punctuation, remove the
    articles ``a``/``an``/``the``, collapse whitespace.

    Punctuation is removed (not replaced by a space), as in the official SQuAD script, so
    ``"U.S."`` becomes ``"us"`` and ``"don't"`` becomes ``"dont"``. The one extension: every
    Unicode punctuation character (category ``P*``: curly quotes, dashes, ellipsis...) counts,
    not only ASCII ``string.punctuation``, so an LLM's typographic quotes do not change a score.
    ``None`` is treated as the empty string.
    """
    if not s:
        return ""
    text = s.lower()
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(s: str | None) -> list[str]:
    """Whitespace tokens of :func:`normalize_answer` (the tokens SQuAD F1 counts)."""
    return normalize_answer(s).split()


# A small English stop-word list: tokens that carry no content for lexical support checks.
# Articles are already gone after normalization; they are listed for completeness.
_STOPWORDS_TEXT = """
a an the and or but if then else of to in on at by for with from as into onto over under
about above below between through during before after is are was were be been being am do
does did doing have has had having it its itself this that these those there here which who
whom whose what when where why how i me my we our us you your he him his she her they them
their not no nor so than too very can could should would may might must will shall also just
only such any all each both some more most other own same s t dont doesnt didnt cant wont
isnt arent wasnt werent according provided
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def content_tokens(s: str | None) -> list[str]:
    """:func:`tokens` without :data:`STOPWORDS` (order kept, duplicates kept)."""
    return [t for t in tokens(s) if t not in STOPWORDS]


# [1], [2, 3], [1-3], [1][2], [^1], 【1】 and (source 2)-style markers the prompt asks for.
_CITATION = re.compile(r"\[\^?\s*\d+(?:\s*[,;\-\u2013]\s*\^?\d+)*\s*\]|\u3010\d+\u3011")


def strip_citation_markers(text: str) -> str:
    """Remove numeric citation markers (``[1]``, ``[2, 3]``, ``[1-3]``, ``[^1]``) and the
    space left before punctuation."""
    out = _CITATION.sub("", text)
    out = re.sub(r"[ \t]+([.,;:!?])", r"\1", out)
    return re.sub(r"[ \t]{2,}", " ", out)


_ABBREVIATIONS = frozenset({
    "e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "no", "fig", "approx",
    "inc", "ltd", "co", "jr", "sr", "cf", "al", "u.s", "u.k", "e.u", "art", "sec", "para",
})
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002])[\"'\u201d\u2019)\]]*\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


def split_sentences(text: str | None) -> list[str]:
    """Split into sentences: at line breaks and after ``.``/``!``/``?`` followed by
    whitespace, except after common abbreviations (``e.g.``, ``Dr.``, ``U.S.``) and single
    initials. List bullets (``-``, ``*``, ``1.``) are removed. Empty pieces are dropped."""
    if not text:
        return []
    sentences: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        pieces = _SENTENCE_END.split(line)
        buffer = ""
        for piece in pieces:
            buffer = f"{buffer} {piece}".strip() if buffer else piece.strip()
            last = buffer.rstrip(".!?").rsplit(" ", 1)[-1].lower()
            if buffer.endswith(".") and (last in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last)):
                continue  # "e.g. the" or "J. Smith": not a sentence end
            if buffer:
                sentences.append(buffer)
            buffer = ""
        if buffer:
            sentences.append(buffer)
    return sentences


# Anchored at the start of the answer (after an optional "Sorry," / "Unfortunately,"), so an
# answer that gives content and then says "I don't know about X" is not an abstention.
_PREFACE = r"(?:(?:i'?m |i am )?sorry|unfortunately|apologies|i apologi[sz]e)?[,.!:;\s-]*"
ABSTENTION_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(_PREFACE + p) for p in (
    r"i (?:do not|don'?t|really don'?t) know\b",
    r"i (?:do not|don'?t) have (?:enough |sufficient |any |the )?(?:information|context|data)",
    r"i(?: am|'m)? (?:cannot|can ?not|can'?t|unable to|not able to|could not|couldn'?t)"
    r" (?:answer|find|determine|tell|say|provide|locate|help with)",
    r"(?:i am|i'm) (?:unable|not able) to (?:answer|find|determine|tell|say|provide)",
    r"(?:(?:the|these|this) (?:provided |given |available |supplied |retrieved )?|"
    r"(?:provided|given|available|supplied|retrieved) )(?:documents?|context|sources?|"
    r"information|passages?|texts?|excerpts?)(?: provided| given| available)? (?:do|does|did) "
    r"not (?:contain|mention|provide|include|say|specify|state|cover|address|answer)",
    r"there (?:is|was) (?:no|not enough|insufficient) (?:information|mention|answer|data|"
    r"evidence|context)",
    r"no (?:relevant )?(?:information|answer|data|context) (?:is |was )?(?:available|found|"
    r"provided|given)",
    r"(?:not enough|insufficient) (?:information|context|data)",
    r"(?:this|that|the) (?:question )?(?:cannot|can ?not|can'?t) be answered",
    r"unknown\.?$",
    r"n/?a\.?$",
))


def _fold(s: str) -> str:
    return (s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
            .strip().lower())


def is_abstention(answer: str | None, no_answer_text: str | None = None) -> bool:
    """Whether ``answer`` declines to answer.

    True when, case-insensitively and ignoring punctuation,

    * the answer is the template's ``no_answer_text`` or starts with it (a model may append a
      citation or a sentence to it), or
    * the answer *starts* with a clear refusal phrase (:data:`ABSTENTION_PATTERNS`: "I don't
      know", "I cannot answer...", "The provided documents do not contain/mention...",
      "There is no information...", "Not enough information", "This cannot be answered"),
      optionally after "Sorry,"/"Unfortunately,".

    An empty answer is *not* an abstention (it is a failure to answer, scored as such), and a
    refusal phrase in the middle of an answer that first gives content does not count.
    """
    if not answer or not answer.strip():
        return False
    if no_answer_text and no_answer_text.strip():
        norm_answer, norm_template = normalize_answer(answer), normalize_answer(no_answer_text)
        if norm_template and (norm_answer == norm_template
                              or norm_answer.startswith(norm_template + " ")):
            return True
    folded = _fold(strip_citation_markers(answer))
    return any(p.match(folded) for p in ABSTENTION_PATTERNS)
