"""Answers benchmark: the base model and the shipped answer adapter, free and constrained.

    .venv/bin/python -m benchmarks.answers \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --unanswerable ../shared/datasets/squad_v2_dev_5articles.json

Measured through the local backend directly (``LocalBackend.generate``, the call the rag worker
makes in its generation stage), not through Kafka and Postgres: on two shared cores the broker
and the database would only add noise to a generation benchmark. Retrieval top 3 is simulated
(``benchmarks.answers_data``): the question's own paragraph and two others of its article.

Articles are split as the adapter's training split (``services.finetune.answer_data.SPLIT``):
nothing here is from a training article. In one run:

1. **Calibration** (calibration articles only): the adapter under the constraint; the "don't
   know" margin on its own first-step scores is chosen there (:func:`calibrate`), nowhere else.
2. **Held out** (other articles), the same questions for every mode: the base model generating
   freely with the v1 prompt (the baseline), the base model constrained (full prompt, "N/A"
   prior), the adapter generating freely on its compact prompt, the adapter constrained, and
   the adapter constrained with the calibrated abstention check (the served default), and
   the same run with a span for every question (what abstaining costs the answerable ones).

``--gate`` writes the adapter's gate record (``gate.json``: held-out figures, the calibrated
margin, passed = the served default beats the base + constraint on F1 and EM) beside the
shipped weights; the serving default reads its margin from there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.answers_data import Case, load_cases, split_named
from benchmarks.answers_report import (
    GOALS,
    summarize,
    write_markdown,
    write_plot,
    write_table,
)
from services.common.generation.answer_adapter import recorded_margin

OUT = Path("docs/benchmarks")
BASELINE_MAX_TOKENS = 64  # as in the README's earlier evaluation; 256 would loop for minutes
FALSE_NO_ANSWER_BUDGET = 0.10
CHANCE_LEVEL = 0.05  # one-sided p-value a margin must beat to count as telling apart
ADAPTER = "answers"
PREVIOUS = "answers-previous"
PREVIOUS_ROW = "previous adapter + constraint + abstention"
FORCED_ROW = "adapter + constraint, a span for every question"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """One reply, in the shape ``answers_report.summarize`` reads; this benchmark's (the
    backend called directly) and ``answers_path``'s (the request/reply path) alike."""

    qid: str
    answerable: bool
    answers: tuple[str, ...]
    # The backend: the question's own passage. The path: the cited marker when every cited
    # passage is the question's own, else -1.
    gold_n: int
    text: str
    latency_s: float
    completion_tokens: int
    abstained: bool
    scores: dict[str, float] | None  # the backend's decision scores; None through the path
    status: str = "ok"  # the path's reply status ("timeout" when none came)


async def run_case(backend: Any, case: Case, mode: str, template: Any,
                   adapter: str | None = None) -> Outcome:
    """One question through the local backend in ``mode``: "free" (base, v1 prompt),
    "extractive" (the backend's extractive path: the base, the adapter the backend serves by
    default, or the ``adapter`` the request names) or "adapter_free" (the adapter on its
    compact prompt, unconstrained)."""
    from services.common.generation.answer_adapter import focus_sentences
    from services.common.generation.base import Extractive, GenerationRequest
    from services.common.generation.evidence_prompt import compact_messages, compact_passages
    from services.common.prompting.prompts import load_template, render
    from services.rag.answer_mode import EXTRACTIVE_MAX_TOKENS

    passages = tuple((p.n, p.text) for p in case.passages)
    if mode == "adapter_free":
        keep = focus_sentences(backend.engine.adapters.resolve(ADAPTER).path)
        messages = compact_messages(case.question,
                                    compact_passages(case.question, passages, keep),
                                    template.no_answer)
        request = GenerationRequest(messages=messages, max_tokens=EXTRACTIVE_MAX_TOKENS,
                                    adapter=ADAPTER)
    else:
        extractive = mode == "extractive"
        prompt_template = template if extractive else load_template("default", 1)
        messages = render(prompt_template, case.question, case.passages, extractive=extractive)
        spec = Extractive(passages=passages, no_answer=template.no_answer, abstain_margin=None,
                          question=case.question) if extractive else None
        request = GenerationRequest(
            messages=messages,
            max_tokens=EXTRACTIVE_MAX_TOKENS if extractive else BASELINE_MAX_TOKENS,
            extractive=spec, adapter=adapter)
    started = time.perf_counter()
    result = await backend.generate(request)
    return Outcome(case.qid, case.answerable, case.answers, case.gold_n, result.text.strip(),
                   time.perf_counter() - started, result.completion_tokens, result.abstained,
                   result.scores)


async def run_all(backend: Any, cases: Sequence[Case], mode: str, template: Any,
                  label: str, progress: Path | None = None,
                  adapter: str | None = None) -> list[Outcome]:
    """Every case in turn; each outcome is also appended to ``progress`` (JSON lines), so a
    run cut short still leaves what it measured."""
    outcomes = []
    for index, case in enumerate(cases, start=1):
        outcomes.append(await run_case(backend, case, mode, template, adapter))
        if progress is not None:
            with progress.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"part": label, **asdict(outcomes[-1])},
                                     ensure_ascii=False) + "\n")
        if index % 10 == 0:
            logger.warning("%s: %d/%d", label, index, len(cases))
    return outcomes


def with_margin(outcomes: Sequence[Outcome], margin: float | None,
                no_answer: str) -> list[Outcome]:
    """The outcomes as the abstention check at ``margin`` would have decided them (the run
    records the scores, so the decision is replayed rather than generated again)."""
    if margin is None:
        return list(outcomes)
    decided = []
    for outcome in outcomes:
        over = (outcome.scores or {}).get("decision", float("-inf")) > margin
        decided.append(Outcome(**{**asdict(outcome), "text": no_answer, "abstained": True})
                       if over and not outcome.abstained else outcome)
    return decided


def own_choice(outcomes: Sequence[Outcome], no_answer: str) -> list[Outcome]:
    """The adapter's outcomes as its own constrained choice decided them: "don't know" where it
    wrote it (the run forced a span there, kept for :func:`by_margin`)."""
    return [Outcome(**{**asdict(o), "text": no_answer, "abstained": True})
            if (o.scores or {}).get("chose_no_answer") else o for o in outcomes]


def by_margin(outcomes: Sequence[Outcome], margin: float, no_answer: str) -> list[Outcome]:
    """Both ways: "don't know" exactly where the adapter's first-step preference for it over
    every span start exceeds ``margin`` (what serving does with ``abstain_margin``)."""
    return [Outcome(**{**asdict(o), "text": no_answer, "abstained": True})
            if (o.scores or {}).get("decision", float("-inf")) > margin
            else Outcome(**{**asdict(o), "abstained": False}) for o in outcomes]


@dataclass(frozen=True)
class MarginCount:
    """How often "don't know" is said at one margin on the calibration part."""

    margin: float
    caught: int  # unanswerable questions answered "don't know"
    unanswerable: int
    false: int  # answerable questions answered "don't know"
    answerable: int


def tells_apart(count: MarginCount, level: float = CHANCE_LEVEL) -> bool:
    """Whether "don't know" at this margin falls on unanswerable questions more often than on
    answerable ones by more than chance (one-sided Fisher exact test): a margin that abstains
    as often on either kind only trades right answers for refusals at random."""
    from scipy.stats import fisher_exact

    table = [[count.caught, count.unanswerable - count.caught],
             [count.false, count.answerable - count.false]]
    return bool(fisher_exact(table, alternative="greater").pvalue < level)


def choose_margin(counts: Sequence[MarginCount]) -> float:
    """The margin that catches the most unanswerable questions while saying "don't know" on at
    most 10% of the answerable ones and telling the two apart better than chance (ties: the
    higher margin, fewer false abstentions); ``math.inf`` (never on the score) when none does."""
    best, best_caught = math.inf, -1.0
    for count in sorted(counts, key=lambda c: c.margin):
        false = count.false / max(1, count.answerable)
        caught = count.caught / max(1, count.unanswerable)
        if false <= FALSE_NO_ANSWER_BUDGET and tells_apart(count) and caught >= best_caught:
            best, best_caught = count.margin, caught
    return float(best)


def calibrate(outcomes: Sequence[Outcome]) -> float:
    """:func:`choose_margin` over every margin the calibration outcomes' scores offer."""
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]

    def says_no(o: Outcome, margin: float) -> bool:
        return (o.scores or {}).get("decision", float("-inf")) > margin

    margins = sorted({(o.scores or {}).get("decision") for o in outcomes} - {None})
    return choose_margin([
        MarginCount(m, sum(says_no(o, m) for o in unanswerable), len(unanswerable),
                    sum(says_no(o, m) for o in answerable), len(answerable)) for m in margins])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--unanswerable", type=Path, required=True)
    parser.add_argument("--calibration", type=int, nargs=2, default=(40, 30),
                        metavar=("ANSWERABLE", "UNANSWERABLE"))
    parser.add_argument("--held-out", type=int, nargs=2, default=(50, 25),
                        metavar=("ANSWERABLE", "UNANSWERABLE"))
    parser.add_argument("--adapter-dir", type=Path, default=None,
                        help="the adapter to measure (default: the shipped one)")
    parser.add_argument("--previous-adapter", type=Path, default=None, metavar="DIR",
                        help="an adapter to beat (e.g. a copy of the shipped one), measured "
                             "in the same run on the same questions, its margin calibrated "
                             "alike; the gate then also requires beating it")
    parser.add_argument("--gate", action="store_true",
                        help="write gate.json beside the adapter (the shipped default's gate)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wait-for-adapter", type=float, default=0.0, metavar="SECONDS",
                        help="run the base modes first, then wait up to this long for the "
                             "adapter folder's datacard.json (an adapter still training)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> None:
    import tempfile

    import torch

    from services.common.config import Settings
    from services.common.generation.answer_adapter import SHIPPED_DIR, AnswerAdapter
    from services.common.generation.local_backend import LocalBackend
    from services.common.generation.local_engine import LocalEngine
    from services.common.prompting.prompts import load_template
    from services.finetune.answer_data import SPLIT

    torch.set_num_threads(args.threads)
    adapter_dir = args.adapter_dir or SHIPPED_DIR
    answerable = load_cases(args.squad, unanswerable=False, seed=args.seed)
    unanswerable = load_cases(args.unanswerable, unanswerable=True, seed=args.seed)
    cal_a, held_a = split_named(answerable, SPLIT["squad_v11"]["calibration"],
                                SPLIT["squad_v11"]["heldout"],
                                (args.calibration[0], args.held_out[0]), args.seed)
    cal_u, held_u = split_named(unanswerable, SPLIT["squad_v2"]["calibration"],
                                SPLIT["squad_v2"]["heldout"],
                                (args.calibration[1], args.held_out[1]), args.seed)
    library = Path(tempfile.mkdtemp(prefix="customllm-answers-"))
    engine = LocalEngine.from_settings(Settings(adapters_dir=library))
    base = LocalBackend(engine)
    # margin +inf: never "don't know", a span for every question (forced where the adapter
    # wrote "don't know"), with its scores; the rows replay the decisions (own_choice, by_margin)
    tuned = LocalBackend(engine, answer_adapter=AnswerAdapter(ADAPTER, math.inf))
    started = time.perf_counter()
    base.warm_up()
    warm_s = time.perf_counter() - started
    template = load_template("default")
    args.out.mkdir(parents=True, exist_ok=True)
    progress = args.out / "answers_progress.jsonl"
    progress.write_text("")
    held = held_a + held_u
    runs = {"constrained": await run_all(base, held, "extractive", template, "constrained",
                                         progress)}
    await wait_for(adapter_dir, args.wait_for_adapter)
    shutil.copytree(adapter_dir, library / ADAPTER)  # a folder placed by hand: served by name
    calibration = await run_all(tuned, cal_a + cal_u, "extractive", template, "calibration",
                                progress)
    margin = calibrate(calibration)
    runs["adapter_constrained"] = await run_all(tuned, held, "extractive", template,
                                                "adapter_constrained", progress)
    runs["adapter_free"] = await run_all(tuned, held, "adapter_free", template, "adapter_free",
                                         progress)
    previous_margin = None
    if args.previous_adapter is not None:
        shutil.copytree(args.previous_adapter, library / PREVIOUS)
        previous = LocalBackend(engine, answer_adapter=AnswerAdapter(PREVIOUS, math.inf))
        previous_calibration = await run_all(previous, cal_a + cal_u, "extractive", template,
                                             "previous_calibration", progress)
        previous_margin = calibrate(previous_calibration)
        runs["previous_constrained"] = await run_all(previous, held, "extractive", template,
                                                     "previous_constrained", progress)
    runs["free"] = await run_all(base, held, "free", template, "free", progress)
    no_answer = template.no_answer
    rows = {
        "base, free generation (baseline)": summarize(runs["free"], no_answer),
        "base + constraint": summarize(runs["constrained"], no_answer),
        "adapter, free generation": summarize(runs["adapter_free"], no_answer),
        "adapter + constraint": summarize(own_choice(runs["adapter_constrained"], no_answer),
                                          no_answer),
        "adapter + constraint + abstention (default)": summarize(
            by_margin(runs["adapter_constrained"], margin, no_answer), no_answer),
        # what the abstention check costs the answerable questions: the same run, never
        # "don't know" (F1 and EM here against the default's show the trade)
        FORCED_ROW: summarize(by_margin(runs["adapter_constrained"], math.inf, no_answer),
                              no_answer),
    }
    if previous_margin is not None:
        rows[PREVIOUS_ROW] = summarize(by_margin(runs["previous_constrained"], previous_margin,
                                                 no_answer), no_answer)
    report = {
        "command": "python -m benchmarks.answers --squad ../shared/datasets/squad_v11_train_"
                   "11articles.json --unanswerable ../shared/datasets/squad_v2_dev_5articles"
                   f".json --calibration {args.calibration[0]} {args.calibration[1]} "
                   f"--held-out {args.held_out[0]} {args.held_out[1]}"
                   + (f" --previous-adapter {args.previous_adapter}"
                      if args.previous_adapter else "")
                   + (" --gate" if args.gate else ""),
        "path": "LocalBackend.generate (no Kafka, no Postgres); retrieval top 3 simulated",
        "threads": args.threads, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "warm_up_s": round(warm_s, 2), "seed": args.seed,
        "split": SPLIT,
        "calibration": {"answerable": len(cal_a), "unanswerable": len(cal_u),
                        "margin": recorded_margin(margin),
                        "previous_adapter_margin": recorded_margin(previous_margin),
                        "rows": summarize(by_margin(calibration, margin, no_answer),
                                          no_answer)},
        "held_out": {"answerable": len(held_a), "unanswerable": len(held_u)},
        "baseline_max_tokens": BASELINE_MAX_TOKENS,
        "goals": GOALS,
        "rows": rows,
        "outcomes": {mode: [asdict(o) for o in outcomes] for mode, outcomes in runs.items()},
        # what the margins were chosen on, kept so another decision rule can be replayed
        "calibration_outcomes": {
            "adapter": [asdict(o) for o in calibration],
            **({"previous": [asdict(o) for o in previous_calibration]}
               if args.previous_adapter is not None else {})},
    }
    (args.out / "answers.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    write_plot(rows, args.out / "answers.png")
    table = write_table(rows, margin)
    write_markdown(report, args.out / "answers.md")
    if args.gate:
        write_gate(adapter_dir, rows, margin, report)
    progress.unlink()  # everything it held is in answers.json now
    shutil.rmtree(library, ignore_errors=True)
    logger.warning("\n%s", table)


async def wait_for(adapter_dir: Path, seconds: float) -> None:
    """Until the adapter folder is complete (its data card is written last) or time is up."""
    deadline = time.monotonic() + seconds
    while not (adapter_dir / "datacard.json").is_file() and time.monotonic() < deadline:
        await asyncio.sleep(10)
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise SystemExit(f"no adapter in {adapter_dir}")


def write_gate(adapter_dir: Path, rows: dict[str, dict[str, float]], margin: float,
               report: dict[str, Any]) -> None:
    """The adapter's gate: it becomes the served default only if, on the held-out articles,
    the adapter + constraint beats the base + constraint on both F1 and EM."""
    base = rows["base + constraint"]
    served = rows["adapter + constraint + abstention (default)"]
    previous = rows.get(PREVIOUS_ROW)
    beats_previous = previous is None or (served["token_f1"] > previous["token_f1"]
                                          and served["exact_match"] >= previous["exact_match"])
    gate = {"passed": served["token_f1"] > base["token_f1"]
            and served["exact_match"] > base["exact_match"] and beats_previous,
            "rule": "the served default (adapter + constraint + abstention) beats base + "
                    "constraint on held-out F1 and EM, and, when measured, the previous "
                    "adapter on F1 without losing EM",
            "abstain_margin": recorded_margin(margin), "metrics": served,
            "compared": {"base + constraint": base,
                         "adapter + constraint": rows["adapter + constraint"],
                         **({PREVIOUS_ROW: previous} if previous else {})},
            "held_out": report["held_out"], "command": report["command"]}
    (adapter_dir / "gate.json").write_text(json.dumps(gate, indent=1))


if __name__ == "__main__":
    main()
