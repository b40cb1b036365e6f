"""Retrieval quality as a user measures it: questions through the gateway, hits from citations.

    .venv/bin/python -m benchmarks.gateway_retrieval \
        --train ../shared/datasets/squad_v11_train_11articles.json \
        --dev ../shared/datasets/squad_v2_dev_5articles.json

``benchmarks.query_retrieval`` calls the retrieval SQL directly. A user sees something else: the
answer's citations after the whole path (gateway → input guardrails → rag worker → output
guardrails → gateway). Each stage can change what comes back: the input stage may redact the
question before it is searched, the rag worker merges chunks into context items and used to cut
them at the prompt's token budget, and the output stage may drop citations. So this benchmark
starts a private stack (Kafka, Postgres, the ingest, embedder, guardrails and rag workers, the
gateway, on ports of its own), publishes data set 1 of the retrieval benchmark (the SQuAD 1.1
train articles plus the SQuAD 2.0 dev paragraphs as distractors, one public document per
paragraph) through ``docs.changes``, and sends its **held-out** questions (a seeded sample,
never tuned on) to ``POST /v1/chat/completions`` with the official ``openai`` client,
``retrieval_only`` and top 10, no cache. A question hits at k when one of the first k cited
documents is its paragraph.

In the same run, on the same questions and the same index: **direct hybrid** (the rag worker's
retrieval SQL called in this process on the question as asked: what the path should return)
and the **naive baseline** (exact cosine + rank-bm25 + RRF over whole paragraphs,
``benchmarks.retrieval_baseline``).

Writes docs/benchmarks/gateway_retrieval.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import configure_environment, running_stack, wait_http
from benchmarks.retrieval_baseline import NaiveBaseline, first_rank, quality
from benchmarks.retrieval_data import HELD_OUT, DataSet, Question, build_datasets

PORTS = {"CUSTOMLLM_KAFKA_PORT": "52292", "CUSTOMLLM_KAFKA_CONTROLLER_PORT": "52293",
         "CUSTOMLLM_POSTGRES_PORT": "52632", "CUSTOMLLM_GATEWAY_PORT": "52881"}
WORKERS = {"ingest": 1, "embedder": 1, "guardrails": 1, "rag": 1}
TOP = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="SQuAD 1.1 train subset JSON")
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD 2.0 dev subset JSON")
    parser.add_argument("--questions", type=int, default=800,
                        help="held-out questions to ask (a seeded sample; 0: all)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    state = configure_environment()
    os.environ.update(PORTS)
    os.environ["CUSTOMLLM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{PORTS['CUSTOMLLM_KAFKA_PORT']}"
    dataset = build_datasets(args.train, args.dev)[0]
    questions = sample(dataset.parts[HELD_OUT], args.questions, args.seed)
    started = time.perf_counter()
    with running_stack(state, WORKERS):
        results = run(state, dataset, questions, args)
    results.update({"command": command(args), "wall_s": round(time.perf_counter() - started, 1),
                    "dataset": dataset.description, "part": HELD_OUT})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gateway_retrieval.json").write_text(json.dumps(results, indent=2))
    chart(results, args.out / "gateway_retrieval.png")
    (args.out / "gateway_retrieval.md").write_text(markdown(results))
    print(markdown(results))


def sample(questions: tuple[Question, ...], n: int, seed: int) -> list[Question]:
    picked = list(questions)
    random.Random(seed).shuffle(picked)
    return picked[:n] if n else picked


def run(state: Path, dataset: DataSet, questions: list[Question],
        args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import query_runs
    from services.common import identity
    from services.common.config import get_settings
    from services.common.events import DocChange, Principal
    from services.gateway.config import gateway_settings
    from services.stack import services as procs

    settings = get_settings()
    key = identity.add_key(identity.key_file_path(settings), "bench-gateway-retrieval",
                           Principal(id="bench-gateway-retrieval", clearance="public"))
    procs.start(state, "gateway")
    gateway = f"http://127.0.0.1:{gateway_settings().gateway_port}"
    wait_http(f"{gateway}/healthz")
    docs = [DocChange(doc_id=p.doc_id, version=1, op="upsert", content=p.text, title=p.title,
                      source="squad", uri=f"squad://{p.doc_id}", license="CC-BY-SA-4.0",
                      privacy_class="public") for p in dataset.paragraphs]
    indexed = query_runs.publish_and_wait(docs, timeout_s=3600)
    print(f"corpus: {indexed}", flush=True)
    started = time.perf_counter()
    cited = ask_all(gateway, key, settings.local_model_id, questions, args.concurrency)
    path_s = time.perf_counter() - started
    ranks = {"gateway": [first_rank(q.doc_id, cited[i]) for i, q in enumerate(questions)]}
    ranks.update(in_process(query_runs.engine, dataset, questions))
    failed = sum(1 for c in cited if c is None)
    return {"corpus": indexed, "questions": len(questions), "failed_requests": failed,
            "gateway_requests_per_s": round(len(questions) / path_s, 2),
            "modes": {name: quality(found, TOP) for name, found in ranks.items()}}


def ask_all(gateway: str, key: str, model: str, questions: list[Question],
            concurrency: int) -> list[list[str] | None]:
    """The cited doc ids per question, in citation order (None: the request failed)."""
    from openai import OpenAI

    cited: list[list[str] | None] = [None] * len(questions)
    pending = list(range(len(questions)))
    lock = threading.Lock()

    def worker() -> None:
        client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=2, timeout=300)
        while True:
            with lock:
                if not pending:
                    return
                index = pending.pop()
                if len(pending) % 100 == 0:
                    print(f"  {len(questions) - len(pending)}/{len(questions)} asked", flush=True)
            try:
                completion = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": questions[index].text}],
                    extra_body={"retrieval_only": True, "top_k": TOP, "use_cache": False})
            except Exception as exc:  # noqa: BLE001 - counted as a miss, the run goes on
                print(f"  request failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            citations = (completion.model_extra or {}).get("citations") or []
            cited[index] = list(dict.fromkeys(c["doc_id"] for c in citations))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return cited


def in_process(engine: Any, dataset: DataSet, questions: list[Question]
               ) -> dict[str, list[int | None]]:
    """Direct hybrid (the worker's SQL on the question as asked) and the naive baseline, on
    the same questions and the index the path used."""
    from benchmarks.query_retrieval import cached_encoder
    from services.rag import passages
    from services.rag.access import scope_for
    from services.rag.retrieval import retrieve

    encode_passages, _timing, encode_queries = cached_encoder()
    texts = [q.text for q in questions]
    vectors = encode_queries(texts)
    baseline = NaiveBaseline([p.doc_id for p in dataset.paragraphs],
                             [p.text for p in dataset.paragraphs],
                             encode_passages([p.text for p in dataset.paragraphs]))
    scope = scope_for("bench-gateway-retrieval", [], "public")
    ranks: dict[str, list[int | None]] = {"direct_hybrid": []}
    for question, vector in zip(questions, vectors, strict=True):
        got = retrieve(engine, vector, question.text, scope, TOP, mode="hybrid", unit="passage")
        ranks["direct_hybrid"].append(first_rank(question.doc_id, passages.doc_ids(got)))
        for mode, ranked in baseline.rank(question.text, vector).items():
            ranks.setdefault(mode, []).append(first_rank(question.doc_id, ranked))
    return ranks


LABELS = {"gateway": "customllm through the gateway (citations)",
          "direct_hybrid": "customllm hybrid, retrieval SQL called directly",
          "naive_rrf": "naive baseline: exact cosine + rank-bm25, RRF",
          "bm25": "naive: rank-bm25 alone", "cosine": "naive: exact cosine alone"}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Command: `{results['command']}`", "",
             f"{results['dataset']}; {results['questions']} held-out questions "
             f"({results['failed_requests']} failed requests); corpus {results['corpus']}; "
             f"{results['gateway_requests_per_s']} requests/s through the path.", "",
             "| ranking | hit@1 | hit@5 | hit@10 | MRR@10 |", "|---|---|---|---|---|"]
    for name, metrics in results["modes"].items():
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(
            f"{metrics[m]:.3f}" for m in ("hit@1", "hit@5", "hit@10", "mrr@10")) + " |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("hit@1", "hit@5", "hit@10", "mrr@10")
    names = list(results["modes"])
    fig, ax = plt.subplots(figsize=(9, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar([m + i * width for m in range(len(metrics))],
               [results["modes"][name][k] for k in metrics], width, label=LABELS.get(name, name))
    ax.set_xticks([m + width * (len(names) - 1) / 2 for m in range(len(metrics))], metrics)
    ax.set_ylim(0.5, 1.0)
    ax.set_title(f"Retrieval through the gateway vs. direct and naive "
                 f"({results['questions']} held-out questions)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def command(args: argparse.Namespace) -> str:
    return (f".venv/bin/python -m benchmarks.gateway_retrieval --train {args.train} "
            f"--dev {args.dev} --questions {args.questions} --concurrency {args.concurrency}")



if __name__ == "__main__":
    main()
