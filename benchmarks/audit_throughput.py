"""How fast the audit recorder stores the query path's records, against its old
record-at-a-time path in the same run.

    .venv/bin/python -m benchmarks.audit_throughput

A retrieval-only request leaves a dozen records on the topics the recorder reads (the screened
request, the draft, and one decision per guardrail check of both stages), so at the query
path's 20 requests a second the recorder must keep up with ~200 records a second, or the audit
trail (and every candidate example made from it) falls ever further behind. This publishes
``--requests`` such requests to a private broker, then lets the recorder (in process, on a
private Postgres) read them all under a fresh consumer group, in alternating rounds: one
transaction per consumed batch (the default) and one per record (the baseline). The tables are
emptied before each round, so every round does the same inserts.

Writes docs/benchmarks/audit_throughput.{json,md,png} (``--out``).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import harness

DECISIONS = (("input", "normalize"), ("input", "length"), ("input", "injection_rules"),
             ("input", "injection_classifier"), ("input", "hate"), ("input", "toxicity"),
             ("input", "pii"), ("output", "pii"), ("output", "grounding"),
             ("output", "citations"))
MODES = {"one transaction per batch (default)": None, "one per record (baseline)": 1}


def request_records(index: int) -> list[tuple[str, str, bytes]]:
    """What one retrieval-only request leaves on the recorder's topics."""
    from services.common import topics as t
    from services.common.events import (
        Citation,
        DraftEvidence,
        GuardrailEvent,
        Principal,
        RagReply,
        RagRequest,
        RetrievedChunk,
        Screening,
    )

    rid = f"bench-{index}-{uuid.uuid4().hex[:8]}"
    who = Principal(id=f"user-{index % 50}", groups=["employees"], clearance="internal")
    request = RagRequest(request_id=rid, reply_to="rag.replies.gateway",
                         question=f"How many days of leave does grade {index % 9} get?",
                         principal=who, screening=Screening(policy_version="default@1#bench"))
    chunks = [RetrievedChunk(chunk_id=f"{n:064x}", doc_id=f"doc-{n}",
                             text="Staff get 25 days of leave a year. " * 8) for n in range(10)]
    draft = RagReply(request_id=rid, answer="", template_version="qa@v1", model="retrieval",
                     citations=[Citation(n=n + 1, chunk_id=c.chunk_id, doc_id=c.doc_id)
                                for n, c in enumerate(chunks)],
                     evidence=DraftEvidence(principal=who, retrieved=chunks))
    records = [(t.RAG_SCREENED, rid, request.to_json()), (t.RAG_DRAFTS, rid, draft.to_json())]
    for stage, check in DECISIONS:
        event = GuardrailEvent(event_id=f"{rid}:{stage}:{check}", request_id=rid, stage=stage,
                               check=check, action="allow", triggered=False, score=0.1,
                               policy_version="default@1#bench", principal_id=who.id)
        records.append((t.GUARDRAILS_EVENTS, rid, event.to_json()))
    return records


def publish(settings: Any, requests: int) -> int:
    from services.common.producer import flush, make_producer, send

    producer, errors, sent = make_producer(settings.kafka_bootstrap, "bench-audit"), [], 0
    for index in range(requests):
        for topic, key, value in request_records(index):
            send(producer, topic, key, value, errors=errors)
            sent += 1
    flush(producer, errors)
    if errors:
        raise RuntimeError(f"publishing failed: {errors[:3]}")
    return sent


def one_round(settings: Any, group: str, batch_records: int | None, total: int) -> dict:
    """The recorder reads everything under ``group``; seconds from its start to the last
    record stored, and from its first record stored (the group join and PII warm-up left
    out)."""
    from sqlalchemy import text

    from services.audit import app
    from services.common.db import make_engine

    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE answer_audit, guardrail_decisions CASCADE"))
    engine.dispose()
    recorder = app.Recorder(settings, group=group,
                            batch_records=batch_records or app.BATCH_RECORDS)
    worker = threading.Thread(target=recorder.run, daemon=True)
    started = time.perf_counter()
    worker.start()
    first = None
    while recorder.stored < total:
        if first is None and recorder.stored:
            first = time.perf_counter()
        if not worker.is_alive():
            raise RuntimeError("the recorder stopped; see the log above")
        time.sleep(0.05)
    done = time.perf_counter()
    recorder.stop()
    worker.join(30)
    steady = done - (first or started)
    return {"records": total, "refused": recorder.refused, "wall_s": round(done - started, 2),
            "steady_s": round(steady, 2), "records_per_s": round(total / steady, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500,
                        help="query-path requests to record (12 records each)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per mode")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    state = harness.configure_environment()
    from services.common.config import get_settings

    settings = get_settings()
    with harness.running_stack(state, {}):
        total = publish(settings, args.requests)
        from services.common.pii import analyzer

        analyzer()  # what each recorder warms at start, loaded once here for every round
        probe = harness.cpu_probe_s()
        rounds: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for index in range(args.rounds):
            for mode, batch in MODES.items():
                result = one_round(settings, f"bench-audit-{index}-{batch or 'batch'}",
                                   batch, total)
                rounds[mode].append(result)
                print(f"{mode}, round {index + 1}: {result['records_per_s']} records/s "
                      f"({result['steady_s']} s for {total}; {result['wall_s']} s wall)",
                      flush=True)
    report = {"requests": args.requests, "records": total,
              "records_per_request": total // args.requests, "cpu_probe_s": probe,
              "rounds": rounds,
              "best_records_per_s": {m: max(r["records_per_s"] for r in rs)
                                     for m, rs in rounds.items()}}
    write(report, args.out)


def write(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "audit_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    per_request = report["records_per_request"]
    lines = ["# Audit recorder throughput", "",
             "```bash", ".venv/bin/python -m benchmarks.audit_throughput", "```", "",
             f"{report['requests']} retrieval-only requests ({report['records']} records, "
             f"{per_request} each), read by the recorder under a fresh consumer group per "
             f"round, tables emptied before each; CPU probe {report['cpu_probe_s']} s (0.36 s "
             "on a quiet day).", "",
             "| mode | records/s (each round) | requests/s it keeps up with (slowest – best "
             "round) |", "|---|---|---|"]
    for mode, rounds in report["rounds"].items():
        rates = [r["records_per_s"] for r in rounds]
        lines.append(f"| {mode} | {', '.join(str(r) for r in rates)} | "
                     f"{min(rates) / per_request:.1f} – {max(rates) / per_request:.1f} |")
    batched, single = (report["rounds"][m] for m in MODES)
    ratios = [b["records_per_s"] / o["records_per_s"] for b, o in zip(batched, single,
                                                                       strict=True)]
    lines += ["", "Batched against per-record within each round (the machine's speed drifts "
              "between rounds, so compare within one): "
              + ", ".join(f"{r:.1f}×" for r in ratios) + ".", "",
              "Records per second from the first record stored to the last (the group "
              "join and the PII detector's warm-up left out)."]
    (out / "audit_throughput.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    modes = list(report["rounds"])
    height = 0.8 / max(len(r) for r in report["rounds"].values())
    for offset, mode in enumerate(modes):
        for index, result in enumerate(report["rounds"][mode]):
            ax.barh(offset + index * height, result["records_per_s"] / per_request, height,
                    color="tab:green" if offset == 0 else "tab:gray",
                    alpha=1.0 - 0.35 * index)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(modes))], modes)
    ax.axvline(20, color="tab:red", linestyle="--", label="query path goal: 20 req/s")
    ax.set_xlabel("requests/s the recorder keeps up with (one bar per round)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "audit_throughput.png", dpi=110)
    plt.close(fig)
    print((out / "audit_throughput.md").read_text())


if __name__ == "__main__":
    main()
