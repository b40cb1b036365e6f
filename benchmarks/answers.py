"""Answers benchmark: free generation (the baseline) beside answers constrained to the evidence.

    .venv/bin/python -m benchmarks.answers \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --unanswerable ../shared/datasets/squad_v2_dev_5articles.json

Measured through the local backend directly (``LocalBackend.generate``, the call the rag worker
makes in its generation stage), not through Kafka and Postgres: on two shared cores the broker
and the database would only add noise to a generation benchmark. Retrieval top 3 is simulated
(``benchmarks.answers_data``): the question's own paragraph and two others of its article.

1. **Calibration** (calibration articles only): constrained answers without the abstention
   check; the "don't know" margin is chosen there (:func:`calibrate`) and nowhere else.
2. **Held out** (other articles), same questions for every mode, in one run: the base model
   generating freely with the v1 prompt (the baseline), the base model constrained, and the
   constrained model with the calibrated abstention check. torch uses one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.answers_data import Case, load_cases, split
from benchmarks.answers_report import summarize, write_plot, write_table

OUT = Path("docs/benchmarks")
BASELINE_MAX_TOKENS = 64  # as in the README's earlier evaluation; 256 would loop for minutes
FALSE_NO_ANSWER_BUDGET = 0.10

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    qid: str
    answerable: bool
    answers: tuple[str, ...]
    gold_n: int
    text: str
    latency_s: float
    completion_tokens: int
    abstained: bool
    scores: dict[str, float] | None


async def run_case(backend: Any, case: Case, mode: str, template: Any) -> Outcome:
    """One question through the local backend: "free" (v1 prompt) or "extractive"."""
    from services.common.generation.base import Extractive, GenerationRequest
    from services.common.prompting.prompts import load_template, render
    from services.rag.answer_mode import EXTRACTIVE_MAX_TOKENS

    extractive = mode == "extractive"
    prompt_template = template if extractive else load_template("default", 1)
    messages = render(prompt_template, case.question, case.passages, extractive=extractive)
    spec = Extractive(passages=tuple((p.n, p.text) for p in case.passages),
                      no_answer=template.no_answer, abstain_margin=None,
                      question=case.question) if extractive else None
    request = GenerationRequest(
        messages=messages, max_tokens=EXTRACTIVE_MAX_TOKENS if extractive else BASELINE_MAX_TOKENS,
        extractive=spec)
    started = time.perf_counter()
    result = await backend.generate(request)
    return Outcome(case.qid, case.answerable, case.answers, case.gold_n, result.text.strip(),
                   time.perf_counter() - started, result.completion_tokens, result.abstained,
                   result.scores)


async def run_all(backend: Any, cases: Sequence[Case], mode: str, template: Any,
                  label: str, progress: Path | None = None) -> list[Outcome]:
    """Every case in turn; each outcome is also appended to ``progress`` (JSON lines), so a
    run cut short still leaves what it measured."""
    outcomes = []
    for index, case in enumerate(cases, start=1):
        outcomes.append(await run_case(backend, case, mode, template))
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


def calibrate(outcomes: Sequence[Outcome]) -> float:
    """The margin that catches the most unanswerable questions while saying "don't know" on at
    most 10% of the answerable ones (ties: the higher margin, fewer false abstentions)."""
    margins = sorted({(o.scores or {}).get("decision") for o in outcomes} - {None})
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    best, best_caught = max(margins, default=0.0), -1.0
    for margin in margins:
        def says_no(o: Outcome, m: float = margin) -> bool:
            return o.abstained or (o.scores or {}).get("decision", float("-inf")) > m
        false = sum(says_no(o) for o in answerable) / max(1, len(answerable))
        caught = sum(says_no(o) for o in unanswerable) / max(1, len(unanswerable))
        if false <= FALSE_NO_ANSWER_BUDGET and caught >= best_caught:
            best, best_caught = margin, caught
    return float(best)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, required=True)
    parser.add_argument("--unanswerable", type=Path, required=True)
    parser.add_argument("--calibration", type=int, nargs=2, default=(40, 40),
                        metavar=("ANSWERABLE", "UNANSWERABLE"))
    parser.add_argument("--held-out", type=int, nargs=2, default=(100, 50),
                        metavar=("ANSWERABLE", "UNANSWERABLE"))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> None:
    import torch

    from services.common.config import Settings
    from services.common.generation.local_backend import LocalBackend
    from services.common.generation.local_engine import LocalEngine
    from services.common.prompting.prompts import load_template

    torch.set_num_threads(1)
    answerable = load_cases(args.squad, unanswerable=False, seed=args.seed)
    unanswerable = load_cases(args.unanswerable, unanswerable=True, seed=args.seed)
    cal_a, held_a = split(answerable, 3, (args.calibration[0], args.held_out[0]), args.seed)
    cal_u, held_u = split(unanswerable, 2, (args.calibration[1], args.held_out[1]), args.seed)
    engine = LocalEngine.from_settings(Settings())
    backend = LocalBackend(engine)
    started = time.perf_counter()
    backend.warm_up()
    warm_s = time.perf_counter() - started
    template = load_template("default")
    args.out.mkdir(parents=True, exist_ok=True)
    progress = args.out / "answers_progress.jsonl"
    progress.write_text("")
    calibration = await run_all(backend, cal_a + cal_u, "extractive", template, "calibration",
                                progress)
    margin = calibrate(calibration)
    held = held_a + held_u
    constrained = await run_all(backend, held, "extractive", template, "constrained", progress)
    free = await run_all(backend, held, "free", template, "free", progress)
    rows = {
        "base, free generation (baseline)": summarize(free, template.no_answer),
        "base + constraint": summarize(with_margin(constrained, None, template.no_answer),
                                       template.no_answer),
        "base + constraint + abstention check": summarize(
            with_margin(constrained, margin, template.no_answer), template.no_answer),
    }
    report = {
        "command": "python -m benchmarks.answers --squad ... --unanswerable ...",
        "path": "LocalBackend.generate (no Kafka, no Postgres); retrieval top 3 simulated",
        "threads": 1, "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "warm_up_s": round(warm_s, 2), "seed": args.seed,
        "calibration": {"answerable": len(cal_a), "unanswerable": len(cal_u),
                        "articles": "first 3 (SQuAD 1.1) / first 2 (SQuAD 2.0) by title",
                        "margin": margin,
                        "rows": summarize(with_margin(calibration, margin, template.no_answer),
                                          template.no_answer)},
        "held_out": {"answerable": len(held_a), "unanswerable": len(held_u)},
        "baseline_max_tokens": BASELINE_MAX_TOKENS,
        "rows": rows,
        "outcomes": {"free": [asdict(o) for o in free],
                     "constrained": [asdict(o) for o in constrained]},
    }
    (args.out / "answers.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    write_plot(rows, args.out / "answers.png")
    progress.unlink()  # everything it held is in answers.json now
    logger.warning("\n%s", write_table(rows, margin))


if __name__ == "__main__":
    main()
