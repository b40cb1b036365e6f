"""Rows the console pages show, written through the same libraries the platform writes with
(or, for tables only a worker fills, with the SQL that worker runs)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import answer_audit
from services.common.events import (
    Citation,
    DraftEvidence,
    GuardrailEvent,
    Principal,
    RagReply,
    RagRequest,
    RetrievedChunk,
    Screening,
    Usage,
)
from services.common.supervision_review import content_hash


def pending_example(engine: Engine, question: str, answer: str, source: str = "console-tests",
                    tags: list[str] | None = None, lineage: dict | None = None) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    example_id = content_hash(messages)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sft_examples (example_id, messages, source, license, privacy_class, "
            "tags, lineage) VALUES (:i, CAST(:m AS jsonb), :s, 'CC-BY-4.0', 'internal', :t, "
            "CAST(:l AS jsonb)) ON CONFLICT (example_id) DO NOTHING"),
            {"i": example_id, "m": json.dumps(messages), "s": source, "t": tags or [],
             "l": json.dumps(lineage or {})})
    return example_id


def adapter_version(engine: Engine, adapters_dir: Path, name: str, version: int,
                    passed: bool | None, run_id: str | None = None) -> None:
    """A registered version with its files in the library, as the fine-tuning worker leaves
    it (``passed`` None: not evaluated yet)."""
    folder = adapters_dir / f"{name}@v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    gate = {} if passed is None else {
        "passed": passed, "reason": "no metric worse beyond tolerance" if passed else
        "f1 worse by 0.12 (tolerance 0.02)", "candidate": f"{name}@v{version}",
        "baseline": "base", "candidate_run": run_id, "baseline_run": None, "deltas": [],
        "failures": [] if passed else ["f1"], "checked": ["f1"], "skipped": []}
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO adapters (name, version, base_model, method, status, gate, path, "
            "card_markdown) VALUES (:n, :v, 'smollm2-135m', 'lora', 'candidate', "
            "CAST(:g AS jsonb), :p, :c)"),
            {"n": name, "v": version, "g": json.dumps(gate), "p": str(folder),
             "c": f"# Adapter `{name}@v{version}`\n\ntrained on the support FAQ"})


def answer(engine: Engine, asker: Principal, question: str, checks: dict[str, str],
           doc_id: str = "console-public", chunk_text: str = "Leave is 25 days.",
           adapter: str | None = None) -> str:
    """An answer's audit record and its decisions, as the audit recorder stores them."""
    rid = f"console-{uuid.uuid4().hex[:12]}"
    request = RagRequest(request_id=rid, reply_to="rag.replies.gateway", question=question,
                         principal=asker, screening=Screening(policy_version="default@1#t"))
    draft = RagReply(request_id=rid, answer="See the policy [1].", template_version="qa@v1",
                     model="smollm2-135m-instruct", backend="local", adapter=adapter,
                     adapter_version="v1" if adapter else None, trace_id="cd" * 16,
                     usage=Usage(prompt_tokens=412, completion_tokens=18),
                     citations=[Citation(n=1, chunk_id="d" * 64, doc_id=doc_id, score=0.83)],
                     latency_ms={"retrieval": 38.0, "generation": 910.0},
                     evidence=DraftEvidence(principal=asker, retrieved=[RetrievedChunk(
                         chunk_id="d" * 64, doc_id=doc_id, text=chunk_text)]))
    with engine.begin() as conn:
        answer_audit.record_screened(conn, request)
        answer_audit.record_draft(conn, draft)
        for check, action in checks.items():
            answer_audit.record_decision(conn, GuardrailEvent(
                event_id=f"{rid}:input:{check}", request_id=rid, stage="input", check=check,
                action=action, triggered=action != "allow", score=0.97 if action != "allow"
                else 0.01, reason=f"{check} said {action}", policy_version="default@1#t",
                principal_id=asker.id))
    return rid


def document(engine: Engine, doc_id: str, privacy: str, acl: list[str], title: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO documents (doc_id, version, title, source, uri, license, privacy_class,"
            " acl, lineage, chunk_count) VALUES (:d, 2, :t, 'wiki', :u, 'internal-use', :p, :a, "
            "'{\"parent\": \"handbook\"}'::jsonb, 3) ON CONFLICT (doc_id) DO NOTHING"),
            {"d": doc_id, "t": title, "u": f"https://wiki/{doc_id}", "p": privacy, "a": acl})
        conn.execute(text(
            "INSERT INTO ingestion_status (doc_id, last_version, state, chunks_total, "
            "chunks_embedded) VALUES (:d, 2, 'indexed', 3, 3) ON CONFLICT (doc_id) DO NOTHING"),
            {"d": doc_id})
