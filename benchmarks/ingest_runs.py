"""The three measurements of the ingestion benchmark, against the running private stack."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import text

from benchmarks.ingest import fixed_windows, percentile
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.embeddings import embedder_for, embedder_from_settings
from services.common.events import DocChange
from services.common.producer import flush, make_producer, send
from services.common.topics import DOCS_CHANGES
from services.ingest.chunking import ChunkingConfig, chunk_document

settings = get_settings()
engine = make_engine(settings.sqlalchemy_url, pool_size=2)
producer = make_producer(settings.kafka_bootstrap, "benchmark")


def _publish(changes: list[DocChange]) -> None:
    errors: list[str] = []
    for change in changes:
        send(producer, DOCS_CHANGES, change.doc_id, change.to_json(), errors=errors)
    flush(producer, errors)


def _indexed(doc_ids: list[str], version: int) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM ingestion_status WHERE doc_id = ANY(:ids) "
            "AND last_version >= :v AND state IN ('indexed', 'deleted')"),
            {"ids": doc_ids, "v": version}).scalar_one()


def _wait(doc_ids: list[str], version: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while _indexed(doc_ids, version) < len(doc_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(doc_ids)} documents not indexed in {timeout_s}s")
        time.sleep(0.005)


def _doc(doc_id: str, version: int, paras: list[str]) -> DocChange:
    return DocChange(doc_id=doc_id, version=version, op="upsert", content="\n\n".join(paras),
                     source="benchmark", license="CC-BY-SA-4.0")


def throughput(paragraphs: list[str], docs: int, references: list[str] | None = None) -> dict:
    salt = uuid.uuid4().hex[:6]
    def body(i: int) -> list[str]:
        # The salt makes every chunk new, so the run measures embedding, not the cache.
        return [f"(copy {salt}-{i}-{j}) " + paragraphs[(i * 5 + j) % len(paragraphs)]
                for j in range(5)]

    changes = [_doc(f"tp-{salt}-{i}", 1, body(i)) for i in range(docs)]
    texts = [c.text for change in changes
             for c in chunk_document(change.content or "", "text/plain", ChunkingConfig())]
    model = embedder_from_settings(settings)
    model.warm_up()
    model.encode_passages(texts[:8])

    def raw() -> float:
        started = time.perf_counter()
        model.encode_passages(texts)
        return time.perf_counter() - started

    cpu_started = time.process_time()
    raw_before = raw()
    raw_cpu_s = time.process_time() - cpu_started
    stack_cpu = _stack_cpu_s()
    started = time.perf_counter()
    _publish(changes)
    _wait([c.doc_id for c in changes], 1)
    pipeline_s = time.perf_counter() - started
    stack_cpu_s = _stack_cpu_s() - stack_cpu
    raw_after = raw()
    raw_s = (raw_before + raw_after) / 2
    reference: dict[str, float] = {}
    for name in references or []:
        other = embedder_for(name)
        other.warm_up()
        other.encode_passages(texts[:8])
        started = time.perf_counter()
        other.encode_passages(texts)
        reference[other.model_id] = len(texts) / (time.perf_counter() - started)
    return {"docs": docs, "chunks": len(texts), "model_id": model.model_id, "raw_s": raw_s,
            "raw_s_before_after": [raw_before, raw_after], "pipeline_s": pipeline_s,
            "raw_chunks_per_s": len(texts) / raw_s,
            "pipeline_chunks_per_s": len(texts) / pipeline_s,
            # CPU-seconds: the raw encode (this process, all threads) against every process of
            # the stack during the pipeline run (workers, Kafka, Postgres). Their ratio is the
            # share of the stack's work that is encoding, what pipeline/raw tends to on a
            # CPU-bound machine with nothing else running.
            "raw_cpu_s": raw_cpu_s, "stack_cpu_s": stack_cpu_s,
            "cpu_ratio": raw_cpu_s / stack_cpu_s if stack_cpu_s else None,
            "stack_cpu_by_process_s": _LAST_BY_PROCESS.copy(),
            "reference_chunks_per_s": reference}


_LAST_BY_PROCESS: dict[str, float] = {}
_FIRST_BY_PROCESS: dict[str, float] = {}


def _stack_cpu_s() -> float:
    """CPU-seconds so far of the private stack's processes (pid files under the state folder,
    and their children: Postgres backends, Kafka's JVM)."""
    import psutil

    totals: dict[str, float] = {}
    for pid_file in settings.state_path.rglob("*.pid"):
        try:
            root = psutil.Process(int(pid_file.read_text().split()[0]))
            for proc in [root, *root.children(recursive=True)]:
                times = proc.cpu_times()
                name = pid_file.stem if proc.pid == root.pid else f"{pid_file.stem}/children"
                totals[name] = totals.get(name, 0.0) + times.user + times.system
        except (ValueError, IndexError, OSError, psutil.Error):
            continue
    if _FIRST_BY_PROCESS:
        _LAST_BY_PROCESS.update({k: round(v - _FIRST_BY_PROCESS.get(k, 0.0), 2)
                                 for k, v in totals.items()})
    else:
        _FIRST_BY_PROCESS.update(totals)
    return sum(totals.values())


def freshness(paragraphs: list[str], samples: int) -> dict:
    model = embedder_from_settings(settings)
    latencies, raw, size = [], [], 0
    for i in range(samples):
        salt = uuid.uuid4().hex[:8]
        paras, total = [], 0
        while total < 5000:
            para = f"({salt}) {paragraphs[(i * 7 + len(paras)) % len(paragraphs)]}"
            paras.append(para)
            total += len(para) + 2
        change = _doc(f"fresh-{salt}", 1, paras)
        size = len((change.content or "").encode())
        started = time.perf_counter()
        _publish([change])
        _wait([change.doc_id], 1)
        latencies.append((time.perf_counter() - started) * 1000)
        chunks = chunk_document(change.content or "", "text/plain", ChunkingConfig())
        started = time.perf_counter()
        model.encode_passages([c.text for c in chunks])
        raw.append((time.perf_counter() - started) * 1000)
    return {"samples": samples, "doc_bytes": size, "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "raw_p50_ms": percentile(raw, 50),
            "latencies_ms": latencies}


def _embedded(doc_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT chunks_embedded FROM ingestion_status WHERE doc_id = :d"),
                            {"d": doc_id}).scalar_one()


def edit_scenarios(paragraphs: list[str]) -> dict:
    salt = uuid.uuid4().hex[:6]
    base = [f"({salt}-{i}) {paragraphs[i % len(paragraphs)]}" for i in range(100)]
    new_para = f"({salt}-new) {paragraphs[-1]}"
    scenarios = {
        "republish unchanged": list(base),
        "edit one paragraph (middle)": base[:50] + [base[50] + " Edited."] + base[51:],
        "insert a paragraph near the top": base[:2] + [new_para] + base[2:],
        "delete a paragraph near the top": base[:3] + base[4:],
        "append a paragraph at the end": base + [new_para + " appended"],
    }
    results = {}
    for index, (name, paras) in enumerate(scenarios.items()):
        doc_id = f"edit-{salt}-{index}"
        _publish([_doc(doc_id, 1, base)])
        _wait([doc_id], 1)
        _publish([_doc(doc_id, 2, paras)])
        _wait([doc_id], 2)
        before = fixed_windows("\n\n".join(base))
        after = fixed_windows("\n\n".join(paras))
        results[name] = {"pipeline": _embedded(doc_id), "fixed_windows": len(after - before),
                         "chunks": len(chunk_document("\n\n".join(paras), "text/plain",
                                                      ChunkingConfig()))}
    return results
