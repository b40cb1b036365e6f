"""The guardrails' PII detector: the shared Presidio analyzer's recognizers (Presidio's, the
shared domain patterns and ``pii_recognizers``), with the same refinement of the named-entity
model's findings (``pii_recognizers.refine``), run fast enough to screen every question.

Both run only the spaCy component the recognizers read, the named-entity model
(``pii.UNUSED_PIPES``). Beyond that, here:

* **A chunk with no letter at all** (digits, codes) gets no spaCy pass beyond the tokenizer:
  the NER labels nothing there that the pattern recognizers don't.
* **No named-entity pass when nothing it finds would be acted on** (``ner=False``): the
  entity types the model can yield (``ner_entity_types``: names, places, organisations, dates,
  nationalities) are all *allowed* by the packaged input policy, and no other finding depends
  on them (``refine`` only drops or retypes the model's own findings among those types). The
  tokenizer still runs, for the recognizers' context words.
* **Long texts are chunked** at sentence or line ends (``CHUNK_CHARS``), and the chunks go
  through spaCy in one batch (``nlp.pipe``), so the cost grows linearly with the length.
* **Nothing the shared detector redacts is lost.** Its recognizers all run here, on the same
  spaCy entities, with the same threshold; overlapping findings are *joined* (the redacted span
  covers all of them, typed after the highest score) instead of one being dropped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from services.common.pii import (
    DEFAULT_MIN_SCORE,
    UNUSED_PIPES,
    PiiFinding,
    analyzer,
    doc_artifacts,
    joined,
)
from services.common.pii_recognizers import refine

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

CHUNK_CHARS = 600
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n+")
_LETTER = re.compile(r"[^\W\d_]")
MIN_PHONE_DIGITS = 5
_URL_TOKEN = re.compile(r"\S*[.:][^\s.:]\S*")
_LOCK = threading.Lock()


@cache
def _engine() -> AnalyzerEngine:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    base = analyzer()  # its registry holds ``pii_recognizers.extra_recognizers()`` too
    wrap = {"PhoneRecognizer": _DigitGated, "UrlRecognizer": _PerToken}
    recognizers = [wrap[r.name](r) if r.name in wrap else r for r in base.registry.recognizers]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=base.nlp_engine,
                          supported_languages=["en"])


@cache
def _phone_digit_run() -> re.Pattern[str]:
    """``MIN_PHONE_DIGITS`` digits, each after at most the separators ``phonenumbers``'
    matcher allows between two digit blocks of one candidate (its own class and limit, read
    from the library, so the gate follows it): every number it can accept holds such a run."""
    from phonenumbers import phonenumbermatcher as matcher

    separators = matcher._PUNCTUATION  # the class with its {0,limit} quantifier
    return re.compile(rf"\d(?:{separators}\d){{{MIN_PHONE_DIGITS - 1}}}",
                      matcher._REGEX_FLAGS)


class _DigitGated:
    """A recognizer run only on text with a run of ``MIN_PHONE_DIGITS`` digits joined by
    phone separators (``_phone_digit_run``): Presidio's phone recognizer runs the
    ``phonenumbers`` matcher once per region over the whole text, the costliest pattern
    check. Counting digits over the whole text let every paragraph with two years in it
    through (two fifths of the PII check's time on 250-500-character texts). The matcher does
    accept some four-digit German numbers ("1648" in "In 1648 ..."), at a score under the
    threshold unless a context word lifts it; those stay out, as they always did in a text
    with no fifth digit elsewhere: four digits are a year far more often than a phone."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list:
        if not _phone_digit_run().search(text):
            return []
        return self._inner.analyze(text, entities, nlp_artifacts)  # type: ignore[attr-defined]


class _PerToken(_DigitGated):
    """A recognizer whose matches never contain white space (Presidio's URL pattern), run on
    each white-space-delimited token that holds a ``.`` or ``:`` followed by something other
    than another one (a host name or a scheme; not a word ending a sentence or a label)
    instead of the whole text. The findings are the same; the time is not (the URL pattern
    costs ~0.1 ms a character on text full of digits and capitals, almost all of it on tokens
    that cannot be URLs)."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: object = None) -> list:
        results = []
        for token in _URL_TOKEN.finditer(text):
            for result in self._inner.analyze(token.group(0), entities, None):  # type: ignore[attr-defined]
                result.start += token.start()
                result.end += token.start()
                results.append(result)
        return results


def engine() -> AnalyzerEngine:
    """The process-wide analyzer (shares spaCy with the shared one, so no second model load)."""
    with _LOCK:
        return _engine()


def chunks(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """(offset, piece) covering ``text``: pieces end at a sentence or line end once they reach
    ``size`` characters; a piece with no such end is cut at a space (at most 2 × ``size``)."""
    if len(text) <= size:
        return [(0, text)]
    pieces: list[tuple[int, str]] = []
    start = 0
    while start < len(text):
        if len(text) - start <= size:
            pieces.append((start, text[start:]))
            break
        boundary = _BOUNDARY.search(text, start + size)
        end = boundary.start() if boundary and boundary.start() < start + 2 * size else -1
        if end == -1:
            space = text.rfind(" ", start + size // 2, start + 2 * size)
            end = space if space > start else min(len(text), start + 2 * size)
        pieces.append((start, text[start:end]))
        start = end
    return pieces


@cache
def ner_entity_types() -> frozenset[str]:
    """The entity types the named-entity model can yield here: its labels as Presidio maps
    them, that its spaCy recognizer reports (``refine`` retypes only among these)."""
    eng = engine()
    nlp_engine = eng.nlp_engine
    labels = nlp_engine.get_nlp("en").get_pipe("ner").labels
    mapping = nlp_engine.ner_model_configuration.model_to_presidio_entity_mapping
    spacy_types = {entity for r in eng.registry.recognizers if r.name == "SpacyRecognizer"
                   for entity in r.supported_entities}
    return frozenset(mapping.get(label, label) for label in labels) & spacy_types


def find_pii_fast(text: str, min_score: float = DEFAULT_MIN_SCORE,
                  entities: Sequence[str] | None = None, ner: bool = True) -> list[PiiFinding]:
    """Findings sorted by position; overlapping findings of one type joined into one span.
    Findings of different types may overlap (a street address and a date inside it): which one
    counts is the policy's to say, see ``joined``. ``ner=False``: no ``ner_entity_types``
    findings (the caller allows them all), for about a third of the cost."""
    if not text.strip():
        return []
    eng = engine()
    nlp = eng.nlp_engine.get_nlp("en")
    pieces = [(offset, piece) for offset, piece in chunks(text) if piece.strip()]
    with_words = [i for i, (_, piece) in enumerate(pieces) if ner and _LETTER.search(piece)]
    docs = dict(zip(with_words, nlp.pipe([pieces[i][1] for i in with_words],
                                         disable=list(UNUSED_PIPES), batch_size=16),
                    strict=True))
    found: list[PiiFinding] = []
    for i, (offset, piece) in enumerate(pieces):
        doc = docs.get(i)
        artifacts = doc_artifacts(doc if doc is not None else nlp.make_doc(piece))
        results = eng.analyze(text=piece, language="en", nlp_artifacts=artifacts,
                              entities=list(entities) if entities is not None else None,
                              score_threshold=min_score)
        found += [PiiFinding(r.entity_type, offset + r.start, offset + r.end, float(r.score))
                  for r in results]
    by_type: dict[str, list[PiiFinding]] = {}
    for finding in refine(text, found):
        by_type.setdefault(finding.entity_type, []).append(finding)
    return sorted((f for group in by_type.values() for f in joined(group)),
                  key=lambda f: (f.start, f.end))
