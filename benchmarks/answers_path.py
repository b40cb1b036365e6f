"""Answers through the real request/reply path, with real retrieval (issue 15's goal 5).

    .venv/bin/python -m benchmarks.answers_path \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --unanswerable ../shared/datasets/squad_v2_dev_5articles.json   # ~22 minutes on 2 cores

``benchmarks.answers`` measures the generation call alone, with retrieval simulated (the
question's paragraph and two others of its article). This one measures what a user gets: a
private stack (Kafka, Postgres, ingest, embedder, guardrails, rag worker), every paragraph of
both files published as a public document (756: the held-out articles' paragraphs among those
of the training and calibration articles, all distractors), and each question sent through
``rag.requests`` with ``top_k`` 3 and no answer cache, so both guardrail stages, hybrid
retrieval, the relevance guard, the answer adapter, the constraint and the abstention check all
act as deployed.

The questions are the answers benchmark's held-out ones (same articles, seed and sizes:
answerable questions of SQuAD 1.1 Antibiotics, Genocide and Montana; unanswerable questions of
SQuAD 2.0 Normans and Victoria), none of whose articles the adapter trained or was calibrated
on. ``--part calibration`` asks questions of the calibration articles instead (Spectre and
Twilight Princess, Sky): the part to study and tune on, written to ``answers_path_calibration.*``
so the held-out record stays. Modes, each on the same questions in one run (the stack is
restarted between modes with the same index):

* ``default``: the rag worker as shipped (the answer adapter, the constraint, its abstention
  margin);
* ``base``: ``CUSTOMLLM_ANSWER_ADAPTER_ENABLED=false``, the base model under the constraint (the
  baseline the adapter has to beat);
* ``free``: the shipped worker with ``answer_mode: free`` per request (the base model writing
  freely, the old default; slow, so not in the default modes);
* ``margin:X``: the default with ``CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN=X``, to choose the
  "don't know" margin on the calibration part as answers are asked in deployment.

Any mode may end in ``@DIR``: an adapter folder built by ``customllm finetune build-default
--out DIR`` is then registered and promoted as the served ``answers`` version for that mode
(its ``gate.json`` gives its margin), so a retrained adapter is measured beside the shipped one
on the same index and questions before it replaces anything; modes without it serve the
shipped version.

Scored as ``benchmarks.answers_report`` scores (SQuAD normalization, markers removed; a "don't
know" scores 0 on an answerable question), with one difference forced by real retrieval: a
citation is right when every passage the answer cites is the question's own paragraph. The
retrieval row (hit@1/@3 of the question's paragraph, from a ``retrieval_only`` request with the
same ``top_k``) says how often the answer was there to be found.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.answers import Outcome
from benchmarks.answers_data import Case, load_cases, split_named
from benchmarks.answers_report import COLUMNS, GOALS, summarize
from benchmarks.harness import configure_environment, cpu_probe_s, running_stack

OUT = Path("docs/benchmarks")
WORKERS = {"ingest": 1, "embedder": 1, "guardrails": 1, "rag": 1}
TOP_K = 3
CALIBRATION = (40, 30)  # benchmarks.answers' default calibration sizes (drawn, not asked)
MODES = {
    "default": ({}, {}),
    "base": ({"CUSTOMLLM_ANSWER_ADAPTER_ENABLED": "false"}, {}),
    # 64 new tokens, as benchmarks.answers' baseline: free generation can loop to the limit
    "free": ({"CUSTOMLLM_MAX_NEW_TOKENS": "64"}, {"answer_mode": "free"}),
}
ROW_NAMES = {"default": "adapter + constraint, its calibrated abstention (the default)",
             "base": "base model + constraint (baseline)",
             "free": "base model, free generation (the old default)"}


@dataclass(frozen=True)
class PathCase:
    """A held-out question and the document id of its own paragraph in the published corpus."""

    qid: str
    question: str
    answers: tuple[str, ...]
    doc_id: str

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def mode_settings(mode: str) -> tuple[dict[str, str], dict[str, Any], str]:
    """(worker environment, request options, row name) of a mode."""
    mode, folder = split_adapter(mode)
    if folder is not None:
        env, options, name = mode_settings(mode)
        return env, options, f"{name}, adapter {folder.name}"
    if mode.startswith("margin:"):
        value = mode.split(":", 1)[1]
        float(value)  # a number ("inf" included), or the mode is unknown
        return ({"CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN": value}, {},
                f"the default at abstention margin {value}")
    env, options = MODES[mode]
    return env, options, ROW_NAMES[mode]


def split_adapter(mode: str) -> tuple[str, Path | None]:
    """A mode and the adapter folder it serves (None: the shipped one)."""
    mode, _, folder = mode.partition("@")
    return mode, Path(folder) if folder else None


def serve_adapter(folder: Path | None) -> str:
    """Promote ``folder``'s weights (the shipped ones when None) as the served ``answers``
    version, registering them first; the rag worker loads the promoted version by its path."""
    from services.common import adapter_registry as registry
    from services.common.config import get_settings
    from services.common.db import make_engine
    from services.common.generation.answer_adapter import SHIPPED_DIR, install, weights_hash

    folder = folder or SHIPPED_DIR
    settings = get_settings()
    adapters_dir = settings.adapters_path
    db = make_engine(settings.sqlalchemy_url, pool_size=1)
    try:
        install(db, adapters_dir, "answers", settings.local_model_id, folder=folder)
        digest = weights_hash(folder)
        version = next(v for v in registry.list_versions(db, "answers")
                       if v.hyperparameters.get("shipped_weights_sha256") == digest)
        if version.status != "promoted":
            registry.promote(db, "answers", version.version, adapters_dir)
        return version.ref
    finally:
        db.dispose()


def corpus(paths: list[Path]) -> tuple[list[Any], dict[str, str]]:
    """One public document per paragraph of every file, and paragraph text → doc id."""
    from services.common.events import DocChange

    docs, by_text = [], {}
    for tag, path in zip(("v11", "v2"), paths, strict=True):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                doc_id = f"{tag}/{len(docs):04d}"
                text = paragraph["context"]
                by_text.setdefault(text, doc_id)
                docs.append(DocChange(
                    doc_id=doc_id, version=1, op="upsert", content=text,
                    title=article["title"].replace("_", " "), source=f"squad-{tag}",
                    uri=f"squad://{doc_id}", license="CC-BY-SA-4.0", privacy_class="public"))
    return docs, by_text


def part_cases(squad: Path, squad2: Path, part: str, sizes: tuple[int, int], seed: int,
               by_text: dict[str, str]) -> list[PathCase]:
    """The answers benchmark's held-out questions (``benchmarks.answers`` draws the same), or a
    draw from the calibration articles, the part to look at when changing anything."""
    from services.finetune.answer_data import SPLIT

    picked: list[Case] = []
    parts = ((squad, "squad_v11", 0, False), (squad2, "squad_v2", 1, True))
    for path, key, index, unanswerable in parts:
        by_article = load_cases(path, unanswerable=unanswerable, seed=seed)
        # the calibration draw comes first, so the held-out draw matches benchmarks.answers'
        if part == "calibration":
            drawn, _ = split_named(by_article, SPLIT[key]["calibration"], SPLIT[key]["heldout"],
                                   (sizes[index], 0), seed)
        else:
            _, drawn = split_named(by_article, SPLIT[key]["calibration"], SPLIT[key]["heldout"],
                                   (CALIBRATION[index], sizes[index]), seed)
        picked += drawn
    return [PathCase(c.qid, c.question, c.answers, by_text[c.passages[c.gold_n - 1].text])
            for c in picked]


def outcome(case: PathCase, reply: Any, latency_s: float) -> Outcome:
    from services.rag.handlers import cited_numbers

    text = (reply.answer or "").strip() if reply is not None else ""
    cited = cited_numbers(text, 99)
    docs = {c.n: c.doc_id for c in reply.citations} if reply is not None else {}
    own = bool(cited) and all(docs.get(n) == case.doc_id for n in cited)
    return Outcome(case.qid, case.answerable, case.answers,
                   gold_n=cited[0] if own and len(cited) == 1 else -1, text=text,
                   latency_s=latency_s,
                   completion_tokens=reply.usage.completion_tokens if reply is not None else 0,
                   abstained=reply is not None and reply.status == "ok" and not reply.citations
                   and not cited, scores=None,
                   status=reply.status if reply is not None else "timeout")


class Asker:
    """One request in flight at a time, as a public reader proven by its own key."""

    def __init__(self) -> None:
        from services.common import identity
        from services.common.config import get_settings
        from services.common.events import Principal
        from services.common.rpc import ReplyClient
        from services.gateway.config import gateway_settings

        settings = get_settings()
        principal = Principal(id="bench-answers", clearance="public")
        key = identity.add_key(identity.key_file_path(settings), principal.id, principal)
        self.client = ReplyClient(settings.kafka_bootstrap, client_id="benchmark-answers",
                                  credential=key)
        self.timeout_s = gateway_settings().rag_reply_timeout_s

    def ask(self, question: str, **options: Any) -> tuple[Any, float]:
        from services.common.events import RagOptions, RagRequest
        from services.common.rpc import ReplyTimeout, new_request_id

        request = RagRequest(request_id=new_request_id(), reply_to="rag.replies.bench",
                             question=question,
                             options=RagOptions(top_k=TOP_K, use_cache=False, **options))
        started = time.perf_counter()
        try:
            reply = self.client.request(request, self.timeout_s)
        except ReplyTimeout:
            reply = None
        return reply, time.perf_counter() - started

    def close(self) -> None:
        self.client.close()


def retrieval(asker: Asker, cases: list[PathCase]) -> tuple[dict[str, float],
                                                             dict[str, list[str]]]:
    """hit@1 and hit@TOP_K of each question's own paragraph, as the answering request sees,
    and the documents retrieved per question."""
    retrieved: dict[str, list[str]] = {}
    for case in cases:
        reply, _ = asker.ask(case.question, retrieval_only=True)
        retrieved[case.qid] = ([c.doc_id for c in sorted(reply.citations, key=lambda c: c.n)]
                               if reply else [])
    n = max(1, len(cases))
    hits1 = sum(retrieved[c.qid][:1] == [c.doc_id] for c in cases)
    hitk = sum(c.doc_id in retrieved[c.qid][:TOP_K] for c in cases)
    return ({"hit@1": round(hits1 / n, 4), f"hit@{TOP_K}": round(hitk / n, 4),
             "n": len(cases)}, retrieved)


def answer_all(asker: Asker, cases: list[PathCase], label: str,
               options: dict[str, Any]) -> list[Outcome]:
    from rich.progress import Progress

    outcomes = []
    with Progress() as progress:
        task = progress.add_task(label, total=len(cases))
        for case in cases:
            reply, latency_s = asker.ask(case.question, **options)
            outcomes.append(outcome(case, reply, latency_s))
            progress.advance(task)
    return outcomes


def run_mode(state: Path, mode: str, cases: list[PathCase], docs: list[Any],
             publish: bool, warmup: list[PathCase]) -> dict[str, Any]:
    env, options, _ = mode_settings(mode)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with running_stack(state, WORKERS):
            # imported once the stack runs: the module reads the database's credentials
            from benchmarks.query_runs import publish_and_wait

            indexed = publish_and_wait(docs, timeout_s=1800) if publish else None
            if env.get("CUSTOMLLM_ANSWER_ADAPTER_ENABLED") != "false":  # base: none served
                serve_adapter(split_adapter(mode)[1])
            asker = Asker()
            try:
                for case in warmup:  # the first answers load the model and the adapter
                    asker.ask(case.question, **options)
                found = retrieval(asker, cases) if publish else (None, {})
                outcomes = answer_all(asker, cases, mode, options)
            finally:
                asker.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {"outcomes": outcomes, "indexed": indexed, "retrieval": found[0],
            "retrieved": found[1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD 1.1 train (11 articles)")
    parser.add_argument("--unanswerable", type=Path, required=True, help="SQuAD 2.0 dev")
    parser.add_argument("--part", choices=("held-out", "calibration"), default="held-out",
                        help="the articles asked about: the reported part, or the one to tune on")
    parser.add_argument("--questions", type=int, nargs=2, default=None,
                        metavar=("ANSWERABLE", "UNANSWERABLE"),
                        help="how many of each (default 150 75 held out, 200 100 calibration)")
    parser.add_argument("--modes", default="default,base",
                        help=f"comma-separated, of {', '.join(MODES)}, margin:X")
    parser.add_argument("--seed", type=int, default=7, help="the answers benchmark's seed")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(m for m in modes if not _known(m))
    if unknown:
        parser.error(f"unknown modes {unknown}; known: {', '.join(MODES)}")

    state = configure_environment()
    os.environ["CUSTOMLLM_BENCH_KEEP_STATE"] = "1"  # one index for every mode
    docs, by_text = corpus([args.squad, args.unanswerable])
    sizes = tuple(args.questions or ((150, 75) if args.part == "held-out" else (200, 100)))
    cases = part_cases(args.squad, args.unanswerable, args.part, sizes, args.seed, by_text)
    warmup = random.Random(args.seed).sample(cases, 2)
    probe = cpu_probe_s()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    try:
        for i, mode in enumerate(modes):
            results[mode] = run_mode(state, mode, cases, docs, publish=i == 0, warmup=warmup)
    finally:
        import shutil

        shutil.rmtree(state, ignore_errors=True)
    report = build_report(args, modes, results, cases, probe, time.perf_counter() - started)
    write(report, results, cases, args.out)


def build_report(args: argparse.Namespace, modes: list[str], results: dict[str, Any],
                 cases: list[PathCase], probe: float, wall_s: float) -> dict[str, Any]:
    from services.common.prompting.prompts import load_template

    no_answer = load_template("default").no_answer
    first = results[modes[0]]
    rows = {}
    for mode in modes:
        outcomes = results[mode]["outcomes"]
        row = summarize(outcomes, no_answer)
        row["refused_or_failed"] = float(sum(o.status != "ok" for o in outcomes))
        rows[mode_settings(mode)[2]] = row
    return {
        "command": "python -m benchmarks.answers_path --squad " + str(args.squad)
                   + " --unanswerable " + str(args.unanswerable) + f" --modes {args.modes}"
                   + (" --part calibration" if args.part == "calibration" else ""),
        "part": args.part, "articles": _articles(args.part),
        "questions": {"answerable": sum(c.answerable for c in cases),
                      "unanswerable": sum(not c.answerable for c in cases)},
        "corpus": first["indexed"], "retrieval": first["retrieval"], "rows": rows,
        "cpu_probe_s": probe, "wall_s": round(wall_s, 1), "top_k": TOP_K,
    }


def _articles(part: str) -> dict[str, list[str]]:
    from services.finetune.answer_data import SPLIT

    key = "heldout" if part == "held-out" else "calibration"
    return {"answerable (SQuAD 1.1)": [t.replace("_", " ") for t in SPLIT["squad_v11"][key]],
            "unanswerable (SQuAD 2.0)": [t.replace("_", " ") for t in SPLIT["squad_v2"][key]]}


def write(report: dict[str, Any], results: dict[str, Any], cases: list[PathCase],
          out: Path) -> None:
    from benchmarks.answers_report import write_plot, write_table

    stem = "answers_path" if report["part"] == "held-out" else "answers_path_calibration"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    answers = {mode: [o.__dict__ for o in r["outcomes"]] for mode, r in results.items()}
    answers["retrieved"] = next(iter(results.values()))["retrieved"]
    answers["cases"] = {c.qid: {"question": c.question, "doc_id": c.doc_id} for c in cases}
    (out / f"{stem}_answers.json").write_text(json.dumps(answers, indent=1) + "\n")
    write_plot(report["rows"], out / f"{stem}.png")
    table = write_table(report["rows"], float("nan")).rsplit("\n\n", 1)[0]
    retrieval = report["retrieval"] or {}
    corpus_ = report["corpus"] or {}
    answerable, unanswerable = (", ".join(v) for v in report["articles"].values())
    text = f"""# Answers through the real request/reply path ({report['part']} questions)

```bash
{report['command']}
```

A private stack (Kafka, Postgres, ingest, embedder, guardrails, rag worker);
{corpus_.get('docs')} paragraphs published as documents ({corpus_.get('chunks')} chunks, indexed
in {corpus_.get('publish_to_indexed_s')} s); {report['questions']['answerable']} answerable
{report['part']} questions (SQuAD 1.1 {answerable}) and
{report['questions']['unanswerable']} unanswerable ones (SQuAD 2.0 {unanswerable}), each
through `rag.requests` with `top_k` {report['top_k']}, no answer cache, one in flight. CPU
probe {report['cpu_probe_s']} s; {report['wall_s']:.0f} s in all.

Retrieval for these questions (a `retrieval_only` request, same `top_k`): the question's own
paragraph first for {retrieval.get('hit@1', float('nan')):.3f}, among the {report['top_k']} for
{retrieval.get(f'hit@{TOP_K}', float('nan')):.3f}.

{table}

Latency is the client's, end to end (both guardrail stages, retrieval and generation). A
citation is right when every passage the answer cites is the question's own paragraph. Rows
that were refused or failed: {', '.join(f"{k}: {int(v['refused_or_failed'])}"
                                         for k, v in report['rows'].items())}.

![answers through the path]({stem}.png)
"""
    (out / f"{stem}.md").write_text(text)
    print(text)
    for name, row in report["rows"].items():
        verdict = ", ".join(f"{c} {'ok' if _meets(c, row[c]) else 'missed'}"
                            for c in COLUMNS[:6])
        print(f"{name}: {verdict}")


def _known(mode: str) -> bool:
    try:
        mode_settings(mode)
    except (KeyError, ValueError):
        return False
    return True


def _meets(column: str, value: float) -> bool:
    goal = GOALS[column]
    return value <= goal if column in ("false_no_answer", "p50_s") else value >= goal


if __name__ == "__main__":
    main()
