"""The retrieval-only query path through the gateway, with both guardrail stages: latency and
throughput, with the stored PII findings and without them (the baseline), in one run.

    .venv/bin/python -m benchmarks.query_path_speed

Starts a private local stack (own ports and state: Kafka, Postgres, the ingest, embedder,
guardrails and rag workers, and the gateway), publishes the paragraphs of
``../shared/datasets/squad_v11_train_11articles.json`` (one public document each) through
``docs.changes`` and waits until they are indexed (the ingest worker stores each chunk's PII
findings on the way). Then the official ``openai`` client sends SQuAD questions of that set to
``POST /v1/chat/completions`` with ``retrieval_only`` (top 10, no cache):

- **single**: one request at a time (the path's own latency): p50, p95, mean;
- **concurrent**: ``--concurrency`` (8) clients at once: p50, p95 and requests per second;
- **per stage**, from the reply's ``latency_ms``: the rag worker's embed / retrieval / total,
  the output stage (``guardrails_output``), and the rest (input stage, four Kafka hops, the
  gateway) as end-to-end minus both; and the input stage alone, measured in this process on
  the same questions (it is another helper's module; measured, not changed, here).

Both modes run in the same stack, one after the other: **stored** (the output stage looks the
cited chunks' findings up, the default) and **baseline** (``CUSTOMLLM_GUARDRAILS_PII_FINDINGS_
LOOKUP=false``: every cited chunk analysed by Presidio for every answer, the behaviour before).
The guardrails worker is restarted between them. Nothing was tuned on these questions.

The machine has 2 cores shared with other sessions: the load average is printed and stored
before and after each phase; figures from a loaded machine are slower than the path.

Writes docs/benchmarks/query_path_speed.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import configure_environment, cpu_probe_s, running_stack, wait_http

PORTS = {"CUSTOMLLM_KAFKA_PORT": "52192", "CUSTOMLLM_KAFKA_CONTROLLER_PORT": "52193",
         "CUSTOMLLM_POSTGRES_PORT": "52532", "CUSTOMLLM_GATEWAY_PORT": "52781"}
WORKERS = {"ingest": 1, "embedder": 1, "guardrails": 1, "rag": 1}
SQUAD = Path(__file__).resolve().parents[2] / "shared/datasets/squad_v11_train_11articles.json"
LOOKUP_ENV = "CUSTOMLLM_GUARDRAILS_PII_FINDINGS_LOOKUP"
GOALS = {"single_p50_ms": 60.0, "concurrent_rps": 20.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 JSON")
    parser.add_argument("--docs", type=int, default=0, help="paragraphs to publish (0: all)")
    parser.add_argument("--single", type=int, default=60, help="sequential requests per mode")
    parser.add_argument("--concurrent", type=int, default=160,
                        help="requests per mode in the concurrent run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--modes", default="stored,baseline")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="ANALYZE the index's tables once published, as autovacuum does "
                        "within its minute (the steady state); --no-analyze measures that "
                        "first minute, planned without statistics")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    state = configure_environment()
    os.environ.update(PORTS)
    os.environ["CUSTOMLLM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{PORTS['CUSTOMLLM_KAFKA_PORT']}"
    started = time.perf_counter()
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                               "cpus": os.cpu_count(), "load_start": os.getloadavg(),
                               "cpu_probe_start_s": cpu_probe_s()}
    with running_stack(state, WORKERS):
        print(f"stack up in {time.perf_counter() - started:.0f} s", flush=True)
        results.update(run(state, args))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["load_end"] = os.getloadavg()
    results["cpu_probe_end_s"] = cpu_probe_s()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "query_path_speed.json").write_text(json.dumps(results, indent=2))
    from benchmarks.query_path_speed_report import chart, markdown

    chart(results, args.out / "query_path_speed.png")
    (args.out / "query_path_speed.md").write_text(markdown(results))
    print(markdown(results))


# --- the run -------------------------------------------------------------------------------------

def run(state: Path, args: argparse.Namespace) -> dict[str, Any]:
    from services.common import identity
    from services.common.config import get_settings
    from services.common.events import Principal
    from services.gateway.config import gateway_settings
    from services.stack import services as procs

    settings = get_settings()
    key = identity.add_key(identity.key_file_path(settings), "bench-speed",
                           Principal(id="bench-speed", clearance="public"))
    procs.start(state, "gateway")
    gateway = f"http://127.0.0.1:{gateway_settings().gateway_port}"
    wait_http(f"{gateway}/healthz")
    docs, questions = corpus(args.squad, args.docs)
    indexed = publish(docs)
    print(f"corpus: {indexed}", flush=True)
    if args.analyze:
        analyze_index()
    rng = random.Random(args.seed)
    rng.shuffle(questions)
    needed = args.warmup + args.single + args.concurrent
    asked = (questions * (needed // max(len(questions), 1) + 1))[:needed]
    out: dict[str, Any] = {"corpus": indexed, "modes": {}}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        restart_guardrails(state, lookup=mode != "baseline")
        out["modes"][mode] = measure_mode(state, gateway, key, settings.local_model_id, asked,
                                          args, mode)
    out["input_stage"] = measure_input_stage(questions[:args.single])
    out["ingest_pii"] = measure_ingest_pii([d.content for d in docs[:args.single]])
    out["findings"] = findings_coverage()
    return out


def corpus(path: Path, limit: int) -> tuple[list[Any], list[str]]:
    """One public document per paragraph, and every question of the published paragraphs."""
    from services.common.events import DocChange

    data = json.loads(path.read_text())
    docs: list[Any] = []
    questions: list[str] = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            if limit and len(docs) >= limit:
                break
            doc_id = f"squad11/{len(docs):04d}"
            docs.append(DocChange(
                doc_id=doc_id, version=1, op="upsert", content=paragraph["context"],
                title=article["title"].replace("_", " "), source="squad-v1.1-train",
                uri=f"squad://{doc_id}", license="CC-BY-SA-4.0", privacy_class="public"))
            questions += [qa["question"] for qa in paragraph["qas"]]
    return docs, questions


def publish(docs: list[Any]) -> dict[str, Any]:
    from benchmarks import query_runs as q

    load = os.getloadavg()
    indexed = q.publish_and_wait(docs, timeout_s=1800)
    return {**indexed, "paragraphs_per_s": round(indexed["docs"]
                                                 / max(indexed["publish_to_indexed_s"], 1e-9), 2),
            "load_before": load, "load_after": os.getloadavg()}


def analyze_index() -> None:
    from sqlalchemy import text

    from benchmarks import query_runs as q

    with q.engine.connect() as conn:
        for table in ("documents", "chunks", "chunk_embeddings"):
            conn.execute(text(f"ANALYZE {table}"))
        conn.commit()


def restart_guardrails(state: Path, lookup: bool) -> None:
    """The guardrails worker again, with the stored findings looked up or not."""
    from confluent_kafka.admin import AdminClient

    from benchmarks.harness import _wait_group
    from services.common import kafka_auth
    from services.common.config import get_settings
    from services.stack import services as procs

    name = "guardrails-0"
    procs.stop(state, name)
    procs.start(state, "guardrails", env={LOOKUP_ENV: "true" if lookup else "false"},
                instance=name)
    admin = AdminClient({**kafka_auth.client_config(get_settings().kafka_bootstrap)})
    _wait_group(admin, "customllm-guardrails", 1, lambda: name in procs.running(state))
    del admin
    time.sleep(3)  # the worker's warm-up task (models) runs once it has joined
    if lookup:
        wait_for_findings()


def wait_for_findings(timeout_s: float = 1800) -> dict[str, Any]:
    """Until the guardrails worker's background indexer has stored findings for every indexed
    chunk text, so the stored mode measures lookups, not first-citation analyses."""
    started = time.monotonic()
    while True:
        coverage = findings_coverage()
        if coverage["with_findings"] >= coverage["chunk_texts"]:
            print(f"PII findings: {coverage} after {time.monotonic() - started:.0f} s",
                  flush=True)
            return coverage
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"PII findings incomplete after {timeout_s:.0f} s: {coverage}")
        time.sleep(2)


def measure_mode(state: Path, gateway: str, key: str, model: str, questions: list[str],
                 args: argparse.Namespace, mode: str) -> dict[str, Any]:
    from openai import OpenAI

    client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=300)
    warm, rest = questions[:args.warmup], questions[args.warmup:]
    single_q, concurrent_q = rest[:args.single], rest[args.single:]
    for question in warm:
        ask(client, model, question, args.top_k)
    statistics = planner_statistics()
    load_single = os.getloadavg()
    before = cpu_seconds(state)
    single = [ask(client, model, q, args.top_k) for q in single_q]
    load_concurrent = os.getloadavg()
    middle = cpu_seconds(state)
    concurrent, wall = ask_concurrently(gateway, key, model, concurrent_q, args)
    after = cpu_seconds(state)
    from benchmarks.query_path_timeline import timeline
    from services.common.config import get_settings

    bootstrap = get_settings().kafka_bootstrap
    result = {"single": {**summary(single, None), "timeline_p50_ms": timeline(bootstrap, single)},
              "concurrent": {**summary(concurrent, wall),
                             "timeline_p50_ms": timeline(bootstrap, concurrent)},
              "cpu_ms_per_request": {"single": cpu_per_request(before, middle, single),
                                     "concurrent": cpu_per_request(middle, after, concurrent)},
              "planner_statistics": statistics,
              "load_single": load_single, "load_concurrent": load_concurrent,
              "load_after": os.getloadavg()}
    s, c = result["single"], result["concurrent"]
    print(f"{mode}: single p50 {s['p50_ms']} ms p95 {s['p95_ms']} ms; {args.concurrency} "
          f"concurrent p50 {c['p50_ms']} ms, {c['rps']} req/s; load {load_single}; stages "
          f"(single, p50 ms) {s['stages_p50_ms']} {s['timeline_p50_ms']}; concurrent "
          f"{c['stages_p50_ms']} {c['timeline_p50_ms']}; CPU ms per request "
          f"{result['cpu_ms_per_request']}", flush=True)
    return result


def ask(client: Any, model: str, question: str, top_k: int) -> dict[str, Any]:
    sent, started = time.time(), time.perf_counter()
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}],
        extra_body={"retrieval_only": True, "top_k": top_k, "use_cache": False})
    e2e = (time.perf_counter() - started) * 1000
    extra = completion.model_extra or {}
    info = extra.get("customllm") or {}
    return {"e2e_ms": e2e, "status": info.get("status"), "id": info.get("request_id"),
            "sent": sent, "received": time.time(),
            "latency_ms": info.get("latency_ms") or {},
            "citations": len(extra.get("citations") or [])}


def ask_concurrently(gateway: str, key: str, model: str, questions: list[str],
                     args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """``concurrency`` threads, each with its own client, taking the next question."""
    from openai import OpenAI

    lock = threading.Lock()
    pending = list(questions)
    done: list[dict[str, Any]] = []

    def worker() -> None:
        client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=300)
        while True:
            with lock:
                if not pending:
                    return
                question = pending.pop()
            try:
                outcome = ask(client, model, question, args.top_k)
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                outcome = {"e2e_ms": None, "status": type(exc).__name__, "latency_ms": {}}
            with lock:
                done.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done, time.perf_counter() - started


def cpu_seconds(state: Path) -> dict[str, float]:
    """CPU time (user + system) so far of every process of the stack, children included
    (Postgres' backends), and of this client process."""
    import psutil

    from benchmarks.footprint import processes

    found: dict[str, float] = {}
    for name, pid in processes(state).items():
        total = 0.0
        try:
            root = psutil.Process(pid)
            times = root.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in root.children(recursive=True):
                try:
                    times = child.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    continue
        except psutil.NoSuchProcess:
            continue
        found[name] = total
    own = os.times()
    found["client"] = own.user + own.system
    return found


def cpu_per_request(before: dict[str, float], after: dict[str, float],
                    outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU milliseconds each process spent per answered request over a phase, and what that
    allows on 2 cores of its own (other tenants' load does not change CPU time much, only
    the wait for it)."""
    ok = max(1, sum(1 for o in outcomes if o["status"] == "ok"))
    per = {name: round((after[name] - before.get(name, 0.0)) * 1000 / ok, 1)
           for name in after}
    stack = sum(v for name, v in per.items() if name != "client")
    return {**per, "stack_total": round(stack, 1),
            "capacity_rps_on_2_cores": round(2000 / stack, 1) if stack > 0 else None}


def summary(outcomes: list[dict[str, Any]], wall_s: float | None) -> dict[str, Any]:
    ok = [o for o in outcomes if o["status"] == "ok" and o["e2e_ms"] is not None]
    e2e = sorted(o["e2e_ms"] for o in ok)
    stages: dict[str, float] = {}
    for name in ("embed", "retrieval", "total", "guardrails_output"):
        values = [o["latency_ms"][name] for o in ok if name in o["latency_ms"]]
        if values:
            stages[name] = round(statistics.median(values), 1)
    rest = [o["e2e_ms"] - o["latency_ms"].get("total", 0)
            - o["latency_ms"].get("guardrails_output", 0) for o in ok]
    found = {"requests": len(outcomes), "ok": len(ok),
             "statuses": _count(o["status"] for o in outcomes),
             "p50_ms": _pct(e2e, 50), "p95_ms": _pct(e2e, 95),
             "mean_ms": round(statistics.fmean(e2e), 1) if e2e else None,
             "stages_p50_ms": {**stages, "rest": round(statistics.median(rest), 1)
                               if rest else None}}
    if wall_s is not None:
        found.update(wall_s=round(wall_s, 2), rps=round(len(ok) / wall_s, 2))
    return found


def measure_input_stage(questions: list[str]) -> dict[str, Any]:
    """The input stage alone, in this process, on the same questions (default policy)."""
    import torch

    from services.common.config import get_settings
    from services.guardrails import input_stage
    from services.guardrails.config import policy_store

    torch.set_num_threads(1)  # as the guardrails worker runs its checks
    policy = policy_store().get()
    deps = input_stage.load_input_deps(get_settings())
    input_stage.warm_up(deps, policy)
    times: list[float] = []
    per_check: dict[str, list[float]] = {}
    for question in questions:
        started = time.perf_counter()
        input_stage.screen_conversation(question, [], policy, deps)
        times.append((time.perf_counter() - started) * 1000)
        for check, ms in deps.timings_ms.items():
            per_check.setdefault(check, []).append(ms)
    times.sort()
    return {"questions": len(times), "p50_ms": _pct(times, 50), "p95_ms": _pct(times, 95),
            "checks_p50_ms": {check: _pct(sorted(ms), 50) for check, ms in per_check.items()},
            "load": os.getloadavg()}


def measure_ingest_pii(paragraphs: list[str]) -> dict[str, Any]:
    """What storing findings costs, once per chunk text: the detector's time per paragraph (the
    call the guardrails worker's background indexer makes), in this process."""
    from services.common.pii import find_pii

    find_pii("warm up")
    times = []
    for paragraph in paragraphs:
        started = time.perf_counter()
        find_pii(paragraph)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"paragraphs": len(times), "p50_ms": _pct(times, 50), "p95_ms": _pct(times, 95),
            "load": os.getloadavg()}


def planner_statistics() -> dict[str, Any]:
    """When the index's tables were last analysed, recorded before the timed requests: a run
    that starts within autovacuum's minute after publishing is planned without statistics."""
    from sqlalchemy import text

    from benchmarks import query_runs as q

    with q.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT relname, n_live_tup, n_mod_since_analyze, "
            "CAST(greatest(last_analyze, last_autoanalyze) AS text) AS analysed, "
            "CAST(now() AS text) AS at FROM pg_stat_user_tables "
            "WHERE relname IN ('chunks', 'documents', 'chunk_embeddings')")).mappings().all()
    return {row["relname"]: {k: row[k] for k in ("n_live_tup", "n_mod_since_analyze",
                                                 "analysed", "at")} for row in rows}


def findings_coverage() -> dict[str, Any]:
    """How many indexed chunk texts have stored findings under the current version, and how
    many texts have findings in all (more than the chunk texts: the output stage analysed
    texts the index does not hold as they are, e.g. citations joining chunks)."""
    from sqlalchemy import text

    from benchmarks import query_runs as q
    from services.common.pii_findings import detector_version

    with q.engine.connect() as conn:
        chunks, covered = conn.execute(text(
            "SELECT count(DISTINCT c.content_hash), count(DISTINCT f.content_hash) "
            "FROM chunks c LEFT JOIN chunk_pii_findings f ON f.content_hash = c.content_hash "
            "AND f.detector_version = :version"), {"version": detector_version()}).one()
        stored = conn.execute(text("SELECT count(*) FROM chunk_pii_findings "
                                   "WHERE detector_version = :version"),
                              {"version": detector_version()}).scalar_one()
    return {"chunk_texts": chunks, "with_findings": covered, "stored_texts": stored}


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(pct / 100 * len(values) + 0.5) - 1))
    return round(values[index], 1)


def _count(values: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for value in values:
        found[str(value)] = found.get(str(value), 0) + 1
    return found



if __name__ == "__main__":
    main()
