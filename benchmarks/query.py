"""Query-path benchmark on a real local stack (own ports and state, stopped at the end).

    .venv/bin/python -m benchmarks.query --squad ../shared/datasets/squad_v2_dev_5articles.json

The SQuAD paragraphs are published as public documents (one per paragraph) through
``docs.changes`` and indexed by the ingest and embedder workers; then questions go through the
real request/reply path (client → rag.requests → guardrails → rag → guardrails → rag.replies),
one at a time, with a :class:`~services.common.rpc.ReplyClient`. Measured, each beside its
baseline in the same run:
- latency split per stage (the reply's ``latency_ms``: embed, retrieval, generation, total) and
  the client-observed end-to-end time of N answerable questions with generation, no cache;
  overhead = end-to-end − generation per request; tokens and generation tokens/s;
- the answer cache: the same N questions twice with ``use_cache`` (fill, then repeat): hit rate
  and end-to-end of hits vs misses, beside the no-cache run;
- retrieval only (``retrieval_only``): the path's end-to-end without generation;
- cheap answer quality: top citation's doc = the question's paragraph (hit@1), and the share of
  abstentions (answer == the template's ``no_answer``) on answerable vs unanswerable questions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import configure_environment, running_stack

WORKERS = {"ingest": 1, "embedder": 1, "guardrails": 1, "rag": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD v2 JSON")
    parser.add_argument("--questions", "-n", type=int, default=30,
                        help="answerable questions (and unanswerable ones, see --unanswerable)")
    parser.add_argument("--unanswerable", type=int, default=None,
                        help="unanswerable questions (default: as many as --questions)")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="CUSTOMLLM_MAX_NEW_TOKENS for the rag worker (keeps runs short)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured requests first")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    os.environ["CUSTOMLLM_MAX_NEW_TOKENS"] = str(args.max_new_tokens)
    state = configure_environment()
    started = time.perf_counter()
    with running_stack(state, WORKERS):
        print(f"stack up in {time.perf_counter() - started:.0f} s", flush=True)
        results = run(args)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "query.json").write_text(json.dumps(results, indent=2))  # raw, in case
    summarize(results)
    report(results, args.out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import query_runs as q

    docs, questions = q.squad_corpus(args.squad)
    rng = random.Random(args.seed)
    answerable = q.sample_questions(questions, True, args.questions + args.warmup, rng)
    warmup, answerable = answerable[:args.warmup], answerable[args.warmup:]
    unanswerable = q.sample_questions(questions, False, args.unanswerable
                                      if args.unanswerable is not None else args.questions, rng)
    corpus = q.publish_and_wait(docs)
    print(f"  corpus: {corpus['docs']} docs, {corpus['chunks']} chunks indexed in "
          f"{corpus['publish_to_indexed_s']} s", flush=True)
    asker = q.Asker()
    try:
        asker.run(warmup, "warm-up", use_cache=False)
        runs = {
            "generation": asker.run(answerable, "answerable, generation", use_cache=False),
            "unanswerable": asker.run(unanswerable, "unanswerable, generation",
                                      use_cache=False),
            "cache_fill": asker.run(answerable, "cache fill", use_cache=True),
            "cache_repeat": asker.run(answerable, "cache repeat", use_cache=True),
            "retrieval_only": asker.run(answerable, "retrieval only", use_cache=False,
                                        retrieval_only=True),
        }
    finally:
        asker.close()
    from services.rag.config import rag_settings

    rag = rag_settings()
    return {
        "config": {"questions": len(answerable), "unanswerable": len(unanswerable),
                   "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                   "warmup": len(warmup), "model": q.settings.local_model_id,
                   "backend": q.settings.generation_backend,
                   "top_k": rag.retrieval_top_k,
                   "min_relevance": rag.min_relevance,
                   "cache_threshold": rag.semantic_cache_threshold,
                   "no_answer": q.NO_ANSWER, "principal": q.PRINCIPAL.model_dump(),
                   "concurrency": 1},
        "corpus": corpus,
        "machine": _machine(),
        "records": runs,
    }


def summarize(results: dict[str, Any]) -> None:
    """Summaries from the raw records, after the stack is down (the raw records stay in the
    JSON, so a summary can be recomputed without a new run)."""
    from benchmarks import query_runs as q

    runs = results["records"]
    results["summary"] = {name: q.summarize(records) for name, records in runs.items()}
    results["cache"] = q.cache_summary(runs["cache_fill"], runs["cache_repeat"],
                                       runs["generation"])


def _machine() -> dict[str, object]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _row(label: str, d: dict[str, Any] | None, width: int = 34) -> str:
    if not d or not d.get("n"):
        return f"{label:{width}} {'-':>6} {'-':>9} {'-':>9}"
    return f"{label:{width}} {d['n']:>6} {d['p50']:>9.1f} {d['p95']:>9.1f}"


def report(results: dict[str, Any], out: Path) -> None:
    from benchmarks.query_report import write_chart

    out.mkdir(parents=True, exist_ok=True)
    (out / "query.json").write_text(json.dumps(results, indent=2))
    chart = write_chart(results, out / "query.png")
    c, corpus, s = results["config"], results["corpus"], results["summary"]
    g, ro, cache = s["generation"], s["retrieval_only"], results["cache"]
    header = f"{'':34} {'n':>6} {'p50 ms':>9} {'p95 ms':>9}"
    print("\n== query benchmark ==")
    print(f"corpus: {corpus['docs']} SQuAD paragraphs → {corpus['chunks']} chunks, indexed "
          f"in {corpus['publish_to_indexed_s']} s; model {c['model']} ({c['backend']}), "
          f"max_new_tokens {c['max_new_tokens']}, top_k {c['top_k']}; one request at a time")
    print(f"\n1. answerable questions with generation, no cache (n={c['questions']})")
    print(header)
    for stage, d in g["stages_ms"].items():
        print(_row(f"  stage {stage}" + (" (rag worker)" if stage == "total" else ""), d))
    print(_row("  transport (e2e − total)", g["transport_ms"]))
    print(_row("end-to-end (client)", g["e2e_ms"]))
    print(_row("overhead (e2e − generation)", g.get("overhead_ms")))
    print(_row("  of which in rag (total − gen)", g.get("pipeline_overhead_ms")))
    if g.get("generated"):
        print(f"tokens: prompt p50 {g['prompt_tokens']['p50']:.0f}, completion p50 "
              f"{g['completion_tokens']['p50']:.0f} (p95 {g['completion_tokens']['p95']:.0f}); "
              f"generation {g['gen_tokens_per_s']['p50']:.1f} tokens/s p50 "
              f"({g['gen_tokens_per_s_overall']:.1f} overall); generated "
              f"{g['generated']}/{g['requests']}")
        fit = g.get("generation_fit")
        if fit:
            print(f"  (tokens/s above include prompt processing; fit gen_ms ≈ "
                  f"{fit['fixed_ms']:.0f} + {fit['prefill_ms_per_token']:.2f}·prompt + "
                  f"{fit['decode_ms_per_token']:.1f}·completion, r² {fit['r2']:.2f}: decode "
                  f"≈ {fit['decode_tokens_per_s']} tokens/s, prefill ≈ "
                  f"{fit['prefill_tokens_per_s']} tokens/s)")
    print(f"\n2. answer cache: same {c['questions']} questions, use_cache twice (fill, repeat)")
    print(header)
    print(_row("no cache (baseline, run 1)", cache["no_cache_e2e_ms"]))
    print(_row("cache miss, end-to-end", cache["miss_e2e_ms"]))
    print(_row("cache hit, end-to-end", cache["hit_e2e_ms"]))
    print(_row("  cache hit, rag total", cache["hit_stages_ms"]["total"]))
    print(_row("  rag total − gen, no cache", cache["no_cache_rag_minus_generation_ms"]))
    print(_row("  rag total − gen, cache miss", cache["miss_rag_minus_generation_ms"]))
    print(_row("  cache lookup (hits)", cache["hit_stages_ms"]["cache_lookup"]))
    print(_row("  cache lookup (misses)", cache["miss_cache_lookup_ms"]))
    print(f"hit rate: repeat pass {cache['repeat_pass_hit_rate']:.0%}, fill pass "
          f"{cache['fill_pass_hit_rate']:.0%} (kinds {cache['hit_kinds']}); repeat hits with "
          f"the fill pass's answer: {_pct(cache['repeat_hit_answer_same_as_fill'])}")
    print(f"\n3. retrieval only (n={ro['requests']}): the path without generation")
    print(header)
    for stage, d in ro["stages_ms"].items():
        print(_row(f"  stage {stage}", d))
    print(_row("  transport (e2e − total)", ro["transport_ms"]))
    print(_row("end-to-end (client)", ro["e2e_ms"]))
    print("\nanswer quality (cheap)")
    print(f"{'':34} {'top cite=own para':>18} {'abstained':>10} {'says no_answer':>15} "
          f"{'gate abstain':>13} {'[n] markers':>12}")
    for label, key in (("answerable, generation", "generation"),
                       ("unanswerable, generation", "unanswerable"),
                       ("answerable, retrieval only", "retrieval_only")):
        d = s[key]
        print(f"{label:34} {_pct(d.get('top_citation_hit@1')):>18} "
              f"{_pct(d.get('abstained')):>10} {_pct(d.get('mentions_no_answer')):>15} "
              f"{_pct(d.get('relevance_gate_abstained')):>13} "
              f"{_pct(d.get('answers_with_markers')) if key != 'retrieval_only' else '-':>12}")
    print("(abstained: answer == the template's no_answer; gate abstain: below min_relevance, "
          "no generation; an answer without [n] markers cites every retrieved item in rank "
          "order, so its top citation is the top retrieved chunk)")
    errors = sum(d["errors"] for d in s.values())
    print(f"\nerrors/timeouts: {errors}; wall time {results['wall_s']} s; "
          f"results: {out / 'query.json'}; chart: {chart}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    main()
