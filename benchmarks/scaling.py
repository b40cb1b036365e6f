"""Scaling benchmark: ingest + embedder replicas vs. throughput and consumer lag.

    .venv/bin/python -m benchmarks.scaling --squad ../shared/datasets/squad_v2_dev_5articles.json

For each replica count r (``--replicas 1 3``) a child process of this script starts its own
private stack (``benchmarks.harness``: fresh state directory, ``ingest-0..`` and
``embedder-0..`` instances), because settings are read once per process. It records which
partitions each group member owns, publishes ``--docs`` documents of 5 salted SQuAD paragraphs
(every chunk is new, so nothing comes from the embedding cache), and measures the wall time
publish → all indexed, chunks/s, and the lag of the consumer groups ``customllm-ingest`` and
``customllm-embedder`` sampled every 0.5 s (max lag and time until it drains to 0).

Lag is computed from committed offsets (Faust commits every ~1 s), through a ``Consumer``
handle as in ``services.common.kafka_offsets`` — never ``AdminClient.list_consumer_group_offsets``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from services.common import kafka_auth
from services.embedder.config import embedder_settings

GROUPS = {"customllm-ingest": "docs.changes", "customllm-embedder": "chunks.embed"}
SAMPLE_S = 0.5
WARMUP_DOCS = 12  # keyed by doc id: with 12 keys every one of 3 partitions is almost surely hit


# ------------------------------------------------------------------------------------- child


class LagSampler(threading.Thread):
    """Every ``SAMPLE_S``: per group, sum over partitions of (high watermark − committed)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        from services.common.kafka_offsets import open_consumer, partitions_of

        self.consumers = {g: open_consumer(bootstrap, g, 5.0) for g in GROUPS}
        self.partitions = {g: partitions_of(c, GROUPS[g], 5.0) or []
                           for g, c in self.consumers.items()}
        self.samples: list[dict] = []
        self.t0 = time.perf_counter()
        self._halt = threading.Event()

    def lag(self, group: str) -> dict[int, int]:
        from services.common.kafka_offsets import committed, watermarks

        consumer, topic, parts = self.consumers[group], GROUPS[group], self.partitions[group]
        marks = watermarks(consumer, topic, parts, 5.0)
        done = committed(consumer, topic, parts, 5.0)
        return {p: high - (done[p][0] if done[p][0] is not None else low)
                for p, (low, high) in marks.items()}

    def run(self) -> None:
        while not self._halt.is_set():
            at = time.perf_counter() - self.t0
            row: dict = {"t_s": round(at, 3)}
            for group in GROUPS:
                try:
                    per = self.lag(group)
                    row[group] = sum(per.values())
                    row[group + ":partitions"] = per
                except Exception as exc:  # noqa: BLE001 - a missed sample is recorded, not fatal
                    row[group] = None
                    row[group + ":error"] = str(exc)
            self.samples.append(row)
            self._halt.wait(max(0.0, SAMPLE_S - (time.perf_counter() - self.t0 - at)))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        for consumer in self.consumers.values():
            consumer.close()


def assignments(bootstrap: str) -> dict[str, list[dict]]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**kafka_auth.client_config(bootstrap)})
    found = admin.describe_consumer_groups(list(GROUPS))
    result = {}
    for group, future in found.items():
        desc = future.result(timeout=10)
        rows = []
        for m in desc.members:
            owned = m.assignment.topic_partitions if m.assignment else []
            rows.append({"client_id": m.client_id, "host": m.host,
                         "partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in owned)})
        result[group] = sorted(rows, key=lambda m: m["partitions"])
    del admin  # before the broker stops (see benchmarks.harness)
    return result


def summarize(samples: list[dict], group: str, end_s: float) -> dict:
    values = [(s["t_s"], s[group]) for s in samples if s.get(group) is not None]
    if not values:
        return {"max_lag": None, "drained_at_s": None}
    peak_t, peak = max(values, key=lambda v: (v[1], -v[0]))
    drained = next((t for t, v in values if t >= peak_t and v == 0), None)
    return {"max_lag": peak, "max_lag_at_s": peak_t, "drained_at_s": drained,
            "indexed_at_s": round(end_s, 3)}


def child(args: argparse.Namespace) -> None:
    from benchmarks.harness import configure_environment, running_stack
    from benchmarks.ingest import squad_paragraphs

    state = configure_environment()
    paragraphs = squad_paragraphs(args.squad)
    r = args.child
    with running_stack(state, {"ingest": r, "embedder": r}):
        from benchmarks.ingest_runs import _doc, _publish, _wait
        from services.common.config import get_settings
        from services.ingest.chunking import ChunkingConfig, chunk_document

        settings = get_settings()
        salt = uuid.uuid4().hex[:6]

        def body(i: int) -> list[str]:  # as ingest_runs.throughput: every chunk is new
            return [f"(copy {salt}-{i}-{j}) " + paragraphs[(i * 5 + j) % len(paragraphs)]
                    for j in range(5)]

        warm = [_doc(f"warm-{salt}-{i}", 1, body(10_000 + i)) for i in range(WARMUP_DOCS)]
        _publish(warm)
        _wait([c.doc_id for c in warm], 1)
        members = assignments(settings.kafka_bootstrap)

        changes = [_doc(f"sc-{salt}-{i}", 1, body(i)) for i in range(args.docs)]
        chunks = sum(len(chunk_document(c.content or "", "text/plain", ChunkingConfig()))
                     for c in changes)
        sampler = LagSampler(settings.kafka_bootstrap)
        time.sleep(1.0)  # a couple of idle samples before the publish
        sampler.start()
        time.sleep(1.0)
        started = time.perf_counter()
        publish_at = started - sampler.t0
        _publish(changes)
        published_s = time.perf_counter() - started
        _wait([c.doc_id for c in changes], 1)
        wall_s = time.perf_counter() - started
        end_at = time.perf_counter() - sampler.t0
        # Keep sampling until both groups have committed everything (or 15 s).
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline:
            last = sampler.samples[-1] if sampler.samples else {}
            if all(last.get(g) == 0 for g in GROUPS) and last.get("t_s", 0) > end_at:
                break
            time.sleep(SAMPLE_S)
        sampler.stop()
        samples = [dict(s, t_s=round(s["t_s"] - publish_at, 3)) for s in sampler.samples]
        result = {
            "replicas": r, "docs": args.docs, "chunks": chunks,
            "publish_s": published_s, "wall_s": wall_s, "chunks_per_s": chunks / wall_s,
            "docs_per_s": args.docs / wall_s,
            "partitions": settings.topic_partitions,
            "embed_batch_size": embedder_settings().embed_batch_size,
            "embed_batch_window_s": embedder_settings().embed_batch_window_s,
            "lag": {g: summarize(samples, g, wall_s) for g in GROUPS},
            "members": members, "samples": samples,
        }
    args.json_out.write_text(json.dumps(result, indent=2))


# ------------------------------------------------------------------------------------ parent


def parent(args: argparse.Namespace) -> None:
    runs = []
    for r in args.replicas:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            out = Path(handle.name)
        command = [sys.executable, "-m", "benchmarks.scaling", "--squad", str(args.squad),
                   "--docs", str(args.docs), "--child", str(r), "--json-out", str(out)]
        print(f"-- replicas={r}: starting a private stack", flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True, timeout=args.child_timeout_s)
        print(f"-- replicas={r}: done in {time.perf_counter() - started:.0f} s", flush=True)
        runs.append(json.loads(out.read_text()))
        out.unlink()
    results = {"command": "python -m benchmarks.scaling " + " ".join(sys.argv[1:]),
               "runs": runs, "machine": _machine()}
    report(results, args.out)


def _machine() -> dict[str, object]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_chart(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"r={run['replicas']}" for run in runs]
    values = [run["chunks_per_s"] for run in runs]
    bars.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868"][:len(runs)])
    for i, v in enumerate(values):
        bars.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    bars.set_ylabel("chunks/s (publish → all indexed)")
    bars.set_title(f"Throughput, {runs[0]['docs']} docs / {runs[0]['chunks']} chunks")
    styles = {"customllm-ingest": "--", "customllm-embedder": "-"}
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    for i, run in enumerate(runs):
        for group, style in styles.items():
            pts = [(s["t_s"], s[group]) for s in run["samples"] if s.get(group) is not None]
            lines.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colors[i % 3],
                       label=f"{group.removeprefix('customllm-')} r={run['replicas']}")
    lines.set_xlabel("seconds since publish started")
    lines.set_ylabel("consumer lag (messages, committed offsets)")
    lines.set_title("Consumer-group lag, sampled every 0.5 s")
    lines.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(results, indent=2))
    chart = write_chart(results, out / "scaling.png")
    print("\n== scaling benchmark ==")
    print(f"{'replicas':>8} {'docs':>5} {'chunks':>6} {'wall s':>7} {'chunks/s':>9} "
          f"{'ingest max lag':>15} {'drained s':>9} {'embedder max lag':>17} {'drained s':>9}")
    for run in results["runs"]:
        ing, emb = run["lag"]["customllm-ingest"], run["lag"]["customllm-embedder"]
        def fmt(v: object) -> str:
            return "n/a" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
        print(f"{run['replicas']:>8} {run['docs']:>5} {run['chunks']:>6} {run['wall_s']:>7.1f} "
              f"{run['chunks_per_s']:>9.1f} {fmt(ing['max_lag']):>15} "
              f"{fmt(ing['drained_at_s']):>9} {fmt(emb['max_lag']):>17} "
              f"{fmt(emb['drained_at_s']):>9}")
    for run in results["runs"]:
        print(f"r={run['replicas']} partition ownership:")
        for group, members in run["members"].items():
            owned = "; ".join(f"{m['client_id']}: {', '.join(m['partitions']) or '-'}"
                              for m in members)
            print(f"  {group}: {owned}")
    print(f"results: {out / 'scaling.json'}; chart: {chart}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD JSON (paragraphs)")
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child-timeout-s", type=float, default=420)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is None:
        parent(args)
        return
    child(args)
    sys.stdout.flush()
    # The stack is stopped; skip librdkafka destructors of module-level clients, which can
    # block once the broker is gone (see benchmarks.harness).
    os._exit(0)


if __name__ == "__main__":
    main()
