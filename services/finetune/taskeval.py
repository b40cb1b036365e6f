"""Scoring the cited-answer task directly on a model (base or base + adapter).

The evaluation harness measures an adapter through the whole query path (retrieval included);
this measures the model alone on fixed prompts, so a change in the numbers is the adapter's and
nothing else's. Generation follows the serving engine: the tokenizer's chat template with the
generation prompt, the prompt encoded without extra special tokens, greedy decoding, stop at the
engine's end-of-turn ids (:func:`services.common.generation.collector.eos_ids`).

Metrics (answer metrics reuse :mod:`services.common.evaluation.metrics`):

* ``format_compliance``: the reply is exactly the no-answer text, or an answer ending in valid
  ``[n]`` markers (every marker names a passage in the prompt);
* ``citation_accuracy`` (answerable cases): the reply cites the gold passage and only it;
* ``exact_match`` / ``token_f1`` (answerable cases): markers stripped, SQuAD-normalized;
* ``abstention_accuracy`` (cases without the gold passage): the reply is the no-answer text;
* ``false_abstention`` (answerable cases): the reply is the no-answer text although it was there.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.evaluation.metrics import exact_match, token_f1
from services.common.grounding.text import normalize_answer
from services.finetune.examples import ChatExample
from services.finetune.taskdata import TaskCase, strip_markers

_TRAILING_MARKERS = re.compile(r"^(?P<body>.*?\S)\s*(?P<markers>(\[\d{1,3}\]\s*)+)\.?$", re.S)
_MARKER = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True)
class CaseScore:
    case_id: str
    prediction: str
    abstained: bool
    format_ok: bool
    cited: tuple[int, ...]
    citation_correct: float | None
    exact_match: float | None
    token_f1: float | None
    abstention_correct: float | None
    false_abstention: float | None


def is_abstention(prediction: str, no_answer: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(no_answer)


def score_case(case: TaskCase, prediction: str, no_answer: str) -> CaseScore:
    prediction = prediction.strip()
    abstained = is_abstention(prediction, no_answer)
    cited = tuple(int(n) for n in _MARKER.findall(prediction))
    match = _TRAILING_MARKERS.match(prediction)
    format_ok = abstained or bool(
        match and cited and all(1 <= n <= case.n_passages for n in cited))
    if case.gold_n is None:
        return CaseScore(case.case_id, prediction, abstained, format_ok, cited, None, None, None,
                         1.0 if abstained else 0.0, None)
    answer = strip_markers(prediction)
    return CaseScore(
        case.case_id, prediction, abstained, format_ok, cited,
        citation_correct=1.0 if set(cited) == {case.gold_n} else 0.0,
        exact_match=0.0 if abstained else exact_match(answer, case.answers),
        token_f1=0.0 if abstained else token_f1(answer, case.answers),
        abstention_correct=None, false_abstention=1.0 if abstained else 0.0)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else None


def summarize(scores: Sequence[CaseScore]) -> dict[str, Any]:
    return {
        "cases": len(scores),
        "format_compliance": _mean([1.0 if s.format_ok else 0.0 for s in scores]),
        "citation_accuracy": _mean([s.citation_correct for s in scores]),
        "exact_match": _mean([s.exact_match for s in scores]),
        "token_f1": _mean([s.token_f1 for s in scores]),
        "abstention_accuracy": _mean([s.abstention_correct for s in scores]),
        "false_abstention": _mean([s.false_abstention for s in scores]),
    }


def generate(model: Any, tokenizer: Any, examples: Sequence[ChatExample], *,
             max_new_tokens: int = 32, batch_size: int = 8) -> tuple[list[str], float]:
    """Greedy replies to each example's prompt (its final assistant turn left out), in
    left-padded batches; returns the replies and the seconds spent."""
    import torch

    from services.common.generation.collector import eos_ids

    stops = sorted(eos_ids(model, tokenizer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    prompts = [tokenizer.apply_chat_template(ex.prompt, tokenize=False,
                                             add_generation_prompt=True) for ex in examples]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding
    replies: dict[int, str] = {}
    started = time.perf_counter()
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]):] = 1
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=stops,
                                 pad_token_id=pad_id)
        for row, i in enumerate(batch):
            replies[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return [replies[i] for i in range(len(examples))], time.perf_counter() - started
