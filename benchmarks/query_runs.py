"""The query benchmark's measurements, against the running private stack: the SQuAD corpus
published through Kafka, then questions through the real request/reply path
(client → rag.requests → guardrails → rag.screened → rag → rag.drafts → guardrails →
rag.replies → client)."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from benchmarks.ingest import percentile
from services.common import identity
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.events import DocChange, Principal, RagOptions, RagRequest
from services.common.producer import flush, make_producer, send
from services.common.prompting.prompts import load_template
from services.common.rpc import ReplyClient, ReplyTimeout, new_request_id
from services.common.topics import DOCS_CHANGES
from services.gateway.config import gateway_settings
from services.rag.handlers import cited_numbers

settings = get_settings()
engine = make_engine(settings.sqlalchemy_url, pool_size=2)
PRINCIPAL = Principal(id="bench-reader", clearance="public")
NO_ANSWER = load_template("default").no_answer
STAGES = ("embed", "cache_lookup", "retrieval", "generation", "total")


@dataclass(frozen=True)
class Question:
    text: str
    doc_id: str  # the paragraph the question was written from
    answerable: bool


# --- corpus ------------------------------------------------------------------------------------

def squad_corpus(path: Path) -> tuple[list[DocChange], list[Question]]:
    """One public document per SQuAD paragraph (``squad/0000``…) and every question with its
    paragraph's doc id."""
    data = json.loads(path.read_text())
    docs, questions = [], []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            doc_id = f"squad/{len(docs):04d}"
            docs.append(DocChange(
                doc_id=doc_id, version=1, op="upsert", content=paragraph["context"],
                title=article["title"].replace("_", " "), source="squad-v2-dev",
                uri=f"squad://{doc_id}", license="CC-BY-SA-4.0", privacy_class="public"))
            questions += [Question(qa["question"].strip(), doc_id,
                                   not qa.get("is_impossible", False))
                          for qa in paragraph["qas"]]
    return docs, questions


def sample_questions(questions: list[Question], answerable: bool, n: int,
                     rng: random.Random) -> list[Question]:
    """``n`` distinct questions (normalized text) of one kind, spread by a seeded shuffle."""
    pool = [q for q in questions if q.answerable == answerable]
    rng.shuffle(pool)
    seen: set[str] = set()
    picked = []
    for question in pool:
        key = " ".join(question.text.lower().split())
        if key not in seen:
            seen.add(key)
            picked.append(question)
        if len(picked) == n:
            break
    return picked


def publish_and_wait(docs: list[DocChange], timeout_s: float = 600) -> dict[str, Any]:
    producer = make_producer(settings.kafka_bootstrap, "benchmark-query")
    errors: list[str] = []
    started = time.perf_counter()
    for doc in docs:
        send(producer, DOCS_CHANGES, doc.doc_id, doc.to_json(), errors=errors)
    flush(producer, errors)
    ids = [d.doc_id for d in docs]
    deadline = time.monotonic() + timeout_s
    while (done := _indexed(ids)) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - done} of {len(ids)} documents not indexed in "
                               f"{timeout_s:.0f}s")
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        chunks = conn.execute(text("SELECT count(*) FROM chunks WHERE doc_id = ANY(:ids)"),
                              {"ids": ids}).scalar_one()
    return {"docs": len(ids), "chunks": chunks, "publish_to_indexed_s": round(elapsed, 1)}


def _indexed(doc_ids: list[str]) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM ingestion_status WHERE doc_id = ANY(:ids) "
            "AND last_version >= 1 AND state = 'indexed'"), {"ids": doc_ids}).scalar_one()


# --- requests ----------------------------------------------------------------------------------

class Asker:
    """Sequential requests (one in flight), so each latency is the path's, not a queue's."""

    def __init__(self) -> None:
        # The benchmark asks as a public reader, proven by its own API key.
        key = identity.add_key(identity.key_file_path(settings), "bench-reader", PRINCIPAL)
        self.client = ReplyClient(settings.kafka_bootstrap, client_id="benchmark-query",
                                  credential=key)
        self.timeout_s = gateway_settings().rag_reply_timeout_s

    def ask(self, question: Question, **options: Any) -> dict[str, Any]:
        request = RagRequest(request_id=new_request_id(), reply_to="rag.replies.bench",
                             question=question.text, options=RagOptions(**options))
        started = time.perf_counter()
        try:
            reply = self.client.request(request, self.timeout_s)
        except ReplyTimeout as exc:
            return {**_base(question), "status": "timeout", "error": str(exc),
                    "e2e_ms": (time.perf_counter() - started) * 1000, "latency_ms": {}}
        e2e_ms = (time.perf_counter() - started) * 1000
        answer = reply.answer.strip()
        return {
            **_base(question), "status": reply.status, "error": reply.error,
            "e2e_ms": round(e2e_ms, 2), "latency_ms": dict(reply.latency_ms),
            "cached": reply.cached, "cache_kind": reply.cache_kind,
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
            "top_doc": reply.citations[0].doc_id if reply.citations else None,
            "citations": len(reply.citations),
            "generated": "generation" in reply.latency_ms,
            "abstained": answer == NO_ANSWER,
            "mentions_no_answer": NO_ANSWER.lower().rstrip(".") in answer.lower(),
            # Without [n] markers the reply cites every retrieved item in rank order, so its
            # top citation is then simply the top retrieved chunk.
            "has_markers": bool(set(cited_numbers(answer, 999))
                                & {c.n for c in reply.citations}),
            "answer": answer[:300],
        }

    def run(self, questions: list[Question], label: str, **options: Any) -> list[dict[str, Any]]:
        records = []
        started = time.perf_counter()
        for i, question in enumerate(questions, 1):
            records.append(self.ask(question, **options))
            if i % 10 == 0 or i == len(questions):
                print(f"  {label}: {i}/{len(questions)} ({time.perf_counter() - started:.0f} s)",
                      flush=True)
        return records

    def close(self) -> None:
        self.client.close()


def _base(question: Question) -> dict[str, Any]:
    return {"question": question.text, "doc_id": question.doc_id,
            "answerable": question.answerable}


# --- summaries ---------------------------------------------------------------------------------

def dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None}
    return {"n": len(values), "p50": round(percentile(values, 50), 2),
            "p95": round(percentile(values, 95), 2),
            "mean": round(sum(values) / len(values), 2)}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency per stage and end to end, overheads per request, tokens and answer quality."""
    ok = [r for r in records if r["status"] == "ok"]
    generated = [r for r in ok if r["generated"]]
    stages = {stage: dist([r["latency_ms"][stage] for r in ok if stage in r["latency_ms"]])
              for stage in STAGES}
    summary: dict[str, Any] = {
        "requests": len(records),
        "errors": len(records) - len(ok),
        "e2e_ms": dist([r["e2e_ms"] for r in ok]),
        "stages_ms": {k: v for k, v in stages.items() if v["n"]},
        # Kafka hops + guardrails + client: what the reply's own clock does not see.
        "transport_ms": dist([r["e2e_ms"] - r["latency_ms"]["total"] for r in ok]),
    }
    if generated:
        summary["generated"] = len(generated)
        summary["overhead_ms"] = dist([r["e2e_ms"] - r["latency_ms"]["generation"]
                                       for r in generated])
        summary["pipeline_overhead_ms"] = dist(
            [r["latency_ms"]["total"] - r["latency_ms"]["generation"] for r in generated])
        summary["prompt_tokens"] = dist([r["prompt_tokens"] for r in generated])
        summary["completion_tokens"] = dist([r["completion_tokens"] for r in generated])
        rates = [r["completion_tokens"] / (r["latency_ms"]["generation"] / 1000)
                 for r in generated if r["latency_ms"]["generation"] > 0]
        summary["gen_tokens_per_s"] = dist(rates)
        total_s = sum(r["latency_ms"]["generation"] for r in generated) / 1000
        summary["gen_tokens_per_s_overall"] = round(
            sum(r["completion_tokens"] for r in generated) / total_s, 2) if total_s else None
        summary["generation_fit"] = generation_fit(generated)
    if ok:
        n = len(ok)
        summary["top_citation_hit@1"] = round(sum(r["top_doc"] == r["doc_id"] for r in ok) / n,
                                              4)
        summary["abstained"] = round(sum(r["abstained"] for r in ok) / n, 4)
        summary["mentions_no_answer"] = round(sum(r["mentions_no_answer"] for r in ok) / n, 4)
        summary["relevance_gate_abstained"] = round(
            sum(not r["generated"] and r["citations"] == 0 for r in ok) / n, 4)
        summary["answers_with_markers"] = round(
            sum(bool(r.get("has_markers")) for r in ok) / n, 4)
        summary["cached"] = round(sum(bool(r["cached"]) for r in ok) / n, 4)
    return summary


def generation_fit(generated: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Least squares generation_ms ≈ fixed + prefill·prompt_tokens + decode·completion_tokens:
    the reply gives one generation time, so this separates prompt processing from decoding
    (an estimate; prompt lengths vary little when the context budget is full)."""
    import numpy as np

    if len(generated) < 8:
        return None
    x = np.array([[1.0, r["prompt_tokens"], r["completion_tokens"]] for r in generated])
    y = np.array([r["latency_ms"]["generation"] for r in generated])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    r2 = 1 - float(residual @ residual) / max(float(((y - y.mean()) ** 2).sum()), 1e-9)
    fixed, prefill, decode = (float(c) for c in coef)
    return {"fixed_ms": round(fixed, 1), "prefill_ms_per_token": round(prefill, 3),
            "decode_ms_per_token": round(decode, 2),
            "decode_tokens_per_s": round(1000 / decode, 1) if decode > 0 else None,
            "prefill_tokens_per_s": round(1000 / prefill, 1) if prefill > 0 else None,
            "r2": round(r2, 3)}


def cache_summary(fill: list[dict[str, Any]], repeat: list[dict[str, Any]],
                  baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """Hit rate of the repeated pass; end to end of hits vs misses over both cache passes,
    beside the no-cache generation run of the same questions."""
    both = [r for r in fill + repeat if r["status"] == "ok"]
    hits = [r for r in both if r["cached"]]
    misses = [r for r in both if not r["cached"]]
    ok_repeat = [r for r in repeat if r["status"] == "ok"]
    ok_fill = [r for r in fill if r["status"] == "ok"]
    return {
        "fill_pass_hit_rate": round(sum(bool(r["cached"]) for r in ok_fill)
                                    / max(len(ok_fill), 1), 4),
        "repeat_pass_hit_rate": round(sum(bool(r["cached"]) for r in ok_repeat)
                                      / max(len(ok_repeat), 1), 4),
        "hit_kinds": {kind: sum(r["cache_kind"] == kind for r in hits)
                      for kind in ("exact", "semantic")},
        "hit_e2e_ms": dist([r["e2e_ms"] for r in hits]),
        "miss_e2e_ms": dist([r["e2e_ms"] for r in misses]),
        "no_cache_e2e_ms": dist([r["e2e_ms"] for r in baseline if r["status"] == "ok"]),
        "hit_stages_ms": {stage: dist([r["latency_ms"][stage] for r in hits
                                       if stage in r["latency_ms"]])
                          for stage in ("embed", "cache_lookup", "total")},
        # The cache's own cost on a miss (lookup + store), free of generation-time noise.
        "miss_rag_minus_generation_ms": _rag_minus_generation(misses),
        "no_cache_rag_minus_generation_ms": _rag_minus_generation(
            [r for r in baseline if r["status"] == "ok"]),
        "miss_cache_lookup_ms": dist([r["latency_ms"]["cache_lookup"] for r in misses
                                      if "cache_lookup" in r["latency_ms"]]),
        "repeat_hit_answer_same_as_fill": _same_answers(fill, repeat),
        "errors": sum(r["status"] != "ok" for r in fill + repeat),
    }


def _rag_minus_generation(records: list[dict[str, Any]]) -> dict[str, Any]:
    return dist([r["latency_ms"]["total"] - r["latency_ms"]["generation"] for r in records
                 if "generation" in r["latency_ms"]])


def _same_answers(fill: list[dict[str, Any]], repeat: list[dict[str, Any]]) -> float | None:
    """Share of repeat-pass hits whose answer is the fill pass's answer to the same question
    (a semantic hit may return a neighbour's answer)."""
    pairs = [(f, r) for f, r in zip(fill, repeat, strict=True) if r.get("cached")]
    if not pairs:
        return None
    return round(sum(f.get("answer") == r.get("answer") for f, r in pairs) / len(pairs), 4)
