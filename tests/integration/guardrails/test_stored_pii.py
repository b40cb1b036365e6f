"""PII findings stored by content hash (issue #13 item 4), on the real Postgres: the output
stage uses stored findings instead of analysing cited chunks again, re-analyses findings of
another detector version, analyses and stores a miss, and redacts exactly as without the
store; the guardrails worker's background indexer stores every indexed chunk's findings once."""

from __future__ import annotations

import re
import uuid
from collections import Counter

import pytest
from sqlalchemy import text

from services.common import pii_findings
from services.common.events import (
    Citation,
    DraftEvidence,
    Principal,
    RagReply,
    RetrievedChunk,
    Screening,
)
from services.common.pii import PiiFinding
from services.guardrails import pii_indexer
from services.guardrails.output_stage import OutputDeps, screen_output
from services.guardrails.policy import PACKAGED_POLICIES, load_policy_file
from tests.support.documents import change, unique_prefix
from tests.support.guarded import swapped_workers
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

POLICY = load_policy_file(PACKAGED_POLICIES / "default.yaml")
VERSION = pii_findings.detector_version(POLICY.output.pii.min_score)
PATTERNS = {"EMAIL_ADDRESS": r"[\w.]+@[\w.]+\.\w+", "PERSON": r"\bMarta Quell\b",
            "US_SSN": r"\b\d{3}-\d{2}-\d{4}\b"}


class CountingDetector:
    """A deterministic stand-in for Presidio that records which texts it was asked about."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, value: str, entities=None, min_score: float = 0.5) -> list[PiiFinding]:
        self.calls[value] += 1
        return sorted((PiiFinding(entity, m.start(), m.end(), 0.9)
                       for entity, pattern in PATTERNS.items()
                       for m in re.finditer(pattern, value)), key=lambda f: f.start)


def _chunks() -> list[RetrievedChunk]:
    """Texts unique to the test run, so rows from other runs never answer for them."""
    tag = uuid.uuid4().hex[:8]
    return [
        RetrievedChunk(chunk_id=f"r-{tag}", doc_id="hr", privacy_class="restricted",
                       text=f"Incident {tag}: lead Marta Quell, mail marta.quell@quillon.example, "
                            "SSN 123-45-6789."),
        RetrievedChunk(chunk_id=f"p-{tag}", doc_id="press", privacy_class="public",
                       text=f"Press release {tag}: write to press@quillon.example."),
    ]


def _draft(chunks: list[RetrievedChunk], answer: str = "") -> RagReply:
    """A retrieval-only draft (no answer text) as the rag worker sends it: every retrieved
    chunk cited with its text, read by a public principal."""
    citations = [Citation(n=i + 1, chunk_id=c.chunk_id, chunk_ids=[c.chunk_id], doc_id=c.doc_id,
                          text=c.text) for i, c in enumerate(chunks)]
    screening = Screening(policy_version=POLICY.policy_version, above_clearance="redact_pii")
    return RagReply(request_id=f"req-{uuid.uuid4().hex[:8]}", answer=answer,
                    citations=citations, reply_to="rag.replies", template_version="default/v1",
                    evidence=DraftEvidence(principal=Principal(id="u", clearance="public"),
                                           screening=screening, retrieved=chunks))


def _deps(detector: CountingDetector, engine) -> OutputDeps:
    return OutputDeps(embed=None, find_pii=detector, toxicity=None, pii_store=engine)


def _rows(stack, value: str) -> dict[str, list[PiiFinding]]:
    found = stack.query("SELECT detector_version, findings::text FROM chunk_pii_findings "
                        "WHERE content_hash = :h", h=pii_findings.text_hash(value))
    return {version: pii_findings.from_json(payload) for version, payload in found}


def _texts(verdict, reply_citations) -> tuple[str, list[str]]:
    return verdict.text, [c.text for c in reply_citations]


def _pii_citations(verdict) -> list[Citation]:
    return next(r for r in verdict.results if r.check == "output_pii").details["citations"]


def _screened_with_stored_chunks(stack, draft: RagReply, chunks: list[RetrievedChunk]):
    """(verdict without a store, verdict with every chunk's findings stored, the detector the
    second run asked): what the store changes for one draft."""
    without = screen_output(draft, POLICY, _deps(CountingDetector(), None))
    detector = CountingDetector()
    pii_findings.store(stack.engine, {pii_findings.text_hash(c.text): detector(c.text)
                                      for c in chunks}, VERSION)
    detector.calls.clear()
    return without, screen_output(draft, POLICY, _deps(detector, stack.engine)), detector


def test_stored_findings_are_used_and_the_redaction_is_the_same(stack):
    chunks = _chunks()
    draft = _draft(chunks, answer="Ask Marta Quell.")
    without, verdict, detector = _screened_with_stored_chunks(stack, draft, chunks)

    # Only the answer's own text went to the detector; the chunks came from the store.
    assert set(detector.calls) == {draft.answer}
    assert _texts(verdict, _pii_citations(verdict)) == _texts(without, _pii_citations(without))
    redacted = _pii_citations(verdict)[0].text
    assert "<PERSON>" in redacted and "<US_SSN>" in redacted and "marta.quell" not in redacted
    assert verdict.text == "Ask <PERSON>."


def test_a_merged_citation_is_answered_from_its_chunks_findings(stack):
    """Neighbouring chunks cited as one item (their texts joined): no analysis of the joined
    text, and the same redaction as the detector run on it."""
    tag = uuid.uuid4().hex[:8]
    texts = [f"Incident {tag}: lead Marta Quell.",
             f"Mail marta.quell@quillon.example, SSN 123-45-6789 ({tag})."]
    chunks = [RetrievedChunk(chunk_id=f"hr-{tag}#{i}", doc_id=f"hr-{tag}",
                             privacy_class="restricted", text=text)
              for i, text in enumerate(texts)]
    merged = Citation(n=1, chunk_id=chunks[0].chunk_id, chunk_ids=[c.chunk_id for c in chunks],
                      doc_id=chunks[0].doc_id, text="\n\n".join(c.text for c in chunks))
    draft = _draft(chunks).model_copy(update={"citations": [merged]})
    without, verdict, detector = _screened_with_stored_chunks(stack, draft, chunks)

    assert merged.text not in detector.calls and set(detector.calls) <= {""}
    assert _texts(verdict, _pii_citations(verdict)) == _texts(without, _pii_citations(without))
    redacted = _pii_citations(verdict)[0].text
    assert "<PERSON>" in redacted and "<US_SSN>" in redacted and "marta.quell" not in redacted


def test_findings_of_another_detector_version_are_not_used(stack):
    chunks = _chunks()
    restricted = chunks[0]
    # An "old detector" that found nothing: used, it would leak the restricted chunk's PII.
    pii_findings.store(stack.engine, {pii_findings.text_hash(c.text): [] for c in chunks},
                       "an-older-detector@0.5")
    detector = CountingDetector()

    verdict = screen_output(_draft(chunks), POLICY, _deps(detector, stack.engine))

    assert detector.calls[restricted.text] == 1
    assert "marta.quell" not in _pii_citations(verdict)[0].text
    rows = _rows(stack, restricted.text)
    assert rows["an-older-detector@0.5"] == []
    assert rows[VERSION] == CountingDetector()(restricted.text)


def test_a_miss_is_analysed_stored_and_then_found(stack):
    chunks = _chunks()
    detector = CountingDetector()
    first = screen_output(_draft(chunks), POLICY, _deps(detector, stack.engine))
    assert all(detector.calls[c.text] >= 1 for c in chunks)
    for chunk in chunks:
        assert _rows(stack, chunk.text)[VERSION] == CountingDetector()(chunk.text)

    detector.calls.clear()
    second = screen_output(_draft(chunks), POLICY, _deps(detector, stack.engine))
    # Retrieval-only: only the (empty) answer is left for the detector.
    assert set(detector.calls) <= {""}
    assert [c.text for c in _pii_citations(second)] == [c.text for c in _pii_citations(first)]


def test_the_real_detector_redacts_the_same_from_the_store(stack):
    """Presidio itself: findings stored by the ingest path give the reply the direct analysis
    gives, character for character."""
    from services.common.pii import find_pii

    chunks = _chunks()
    draft = _draft(chunks, answer="Marta Quell leads the incident.")
    direct = screen_output(draft, POLICY, _deps(find_pii, None))
    counts = pii_findings.analyse_missing(stack.engine, [c.text for c in chunks], find_pii,
                                          POLICY.output.pii.min_score)
    assert counts == {"texts": 2, "analysed": 2, "stored": 2}
    stored = screen_output(draft, POLICY, _deps(find_pii, stack.engine))
    assert stored.text == direct.text
    assert [c.text for c in _pii_citations(stored)] == [c.text for c in _pii_citations(direct)]
    assert "marta.quell" not in _pii_citations(stored)[0].text


def test_storing_is_idempotent_and_only_missing_texts_are_analysed(stack):
    chunks = _chunks()
    detector = CountingDetector()
    texts = [c.text for c in chunks]
    first = pii_findings.analyse_missing(stack.engine, texts, detector)
    again = pii_findings.analyse_missing(stack.engine, texts, detector)
    assert first == {"texts": 2, "analysed": 2, "stored": 2}
    assert again == {"texts": 2, "analysed": 0, "stored": 0}
    # Two writers racing on the same rows (a redelivery after a crash): no error, no duplicate.
    rows = {pii_findings.text_hash(t): detector(t) for t in texts}
    assert pii_findings.store(stack.engine, rows, pii_findings.detector_version()) == 0
    assert all(len(_rows(stack, t)) == 1 for t in texts)


def test_the_version_follows_the_minimum_score_and_is_stable():
    assert pii_findings.detector_version(0.5) == pii_findings.detector_version(0.5)
    assert pii_findings.detector_version(0.5) != pii_findings.detector_version(0.6)


def _contacts_document(stack, prefix: str) -> list[str]:
    """A published, indexed document with personal data; the content hashes of its chunks."""
    doc_id = unique_prefix(prefix) + "contacts"
    body = (f"Escalations for case {uuid.uuid4().hex[:8]} go to Marta Quell, "
            "marta.quell@quillon.com, phone +1 202 555 0143, who answers within a day.")
    stack.publish([change(doc_id, 1, [body])])
    stack.wait_indexed({doc_id: 1})
    hashes = [row[0] for row in stack.query(
        "SELECT content_hash FROM chunks WHERE doc_id = :d", d=doc_id)]
    assert hashes
    return hashes


def _stored(stack, hashes: list[str], version: str) -> dict[str, list[PiiFinding]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT content_hash, findings::text FROM chunk_pii_findings "
            "WHERE content_hash = ANY(:h) AND detector_version = :v"),
            {"h": hashes, "v": version}).all()
    return {row[0]: pii_findings.from_json(row[1]) for row in rows}


def test_the_indexer_analyses_each_pending_chunk_once(stack, workers):
    hashes = _contacts_document(stack, "pii-index")
    detector = CountingDetector()
    # A minimum score of its own: a version no one else uses, so the stand-in's findings are
    # never read by another test's output stage (every chunk of the shared table is pending).
    min_score, version = 0.4321, pii_findings.detector_version(0.4321)
    assert set(hashes) <= {h for h, _ in pii_indexer.pending(stack.engine, version, 100_000)}
    assert pii_indexer.index_all(stack.engine, detector, min_score, batch_size=500) >= len(hashes)
    stored = _stored(stack, hashes, version)
    assert set(stored) == set(hashes)
    assert {f.entity_type for found in stored.values() for f in found} >= {"PERSON",
                                                                            "EMAIL_ADDRESS"}
    assert not set(hashes) & {h for h, _ in pii_indexer.pending(stack.engine, version, 100_000)}
    pii_indexer.index_all(stack.engine, detector, min_score, batch_size=500)
    assert set(detector.calls.values()) == {1}  # chunks written meanwhile at most, once each


def test_a_replica_skips_while_another_holds_the_indexing_lock(stack):
    with stack.engine.begin() as conn:
        assert conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                            {"k": pii_indexer.LOCK_KEY}).scalar_one()
        result = pii_indexer.index_batch(stack.engine, CountingDetector(), 0.4322, 8)
    assert result.skipped and result.analysed == 0


def test_the_guardrails_worker_indexes_new_chunks_in_the_background(stack, workers,
                                                                    otlp_receiver):
    env = {"CUSTOMLLM_OTEL_EXPORTER": "otlp", "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint}
    with swapped_workers(stack, ("guardrails",), {**env, "CUSTOMLLM_GUARDRAILS_PII_INDEXER": "1",
                                                  "CUSTOMLLM_GUARDRAILS_PII_INDEX_EVERY_S": "0.5"},
                         restore_env=env):
        hashes = _contacts_document(stack, "pii-worker")
        stored = wait_for(lambda: (found := _stored(stack, hashes, VERSION)) and
                          set(found) == set(hashes) and found, 180,
                          what="the worker's stored findings")
    types = {f.entity_type for found in stored.values() for f in found}
    assert {"PERSON", "EMAIL_ADDRESS"} <= types  # real Presidio, the output stage's detector


def test_findings_of_older_detector_builds_are_pruned_after_the_delay(stack):
    """Another build's rows go once they are older than the delay; this build's rows stay
    whatever their minimum score (another policy) and age, and so do another build's recent
    rows (a rolling upgrade's old replicas still read them)."""
    tag = uuid.uuid4().hex
    build = VERSION.split("@", 1)[0]
    older = "0" * 16 + "@0.5"
    rows = {f"old-{tag}": (older, "3 days"), f"recent-{tag}": (older, "1 hour"),
            f"mine-{tag}": (VERSION, "3 days"), f"other-policy-{tag}": (f"{build}@0.8", "3 days")}
    with stack.engine.begin() as conn:
        for content_hash, (version, age) in rows.items():
            conn.execute(text(
                "INSERT INTO chunk_pii_findings (content_hash, detector_version, findings, "
                "created_at) VALUES (:h, :v, '[]', now() - CAST(:age AS interval))"),
                {"h": content_hash, "v": version, "age": age})
    assert pii_indexer.prune_stale(stack.engine, older_than_s=24 * 3600) >= 1
    left = {r[0] for r in stack.query("SELECT content_hash FROM chunk_pii_findings "
                                       "WHERE content_hash LIKE :t", t=f"%-{tag}")}
    assert left == {f"recent-{tag}", f"mine-{tag}", f"other-policy-{tag}"}
