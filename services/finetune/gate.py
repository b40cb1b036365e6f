"""The promotion gate: the candidate adapter against the base (or the promoted adapter) on the
job's test set, through the real query path, judged by the evaluation harness's own rule.

Both systems are run with :func:`services.common.evaluation.runner.run_eval` (questions over
Kafka to the rag worker, exactly as ``customllm eval run`` does), compared case by case with
:func:`services.common.evaluation.compare.compare` and judged by
:func:`services.common.evaluation.compare.gate` (worse by more than the tolerance AND
significantly so). The runs are stored like any other evaluation run, so ``customllm eval
compare BASELINE CANDIDATE`` shows the same table later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from services.common.evaluation.compare import (
    COMPARE_METRICS,
    DEFAULT_TOLERANCES,
    MetricDelta,
    Tolerance,
    compare,
    gate,
)
from services.common.evaluation.models import EvalCase
from services.common.exceptions import CustomLLMError


class GateConfigError(CustomLLMError):
    """Tolerances that cannot be used."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why; stored on the adapter row and in its card."""

    passed: bool
    failures: list[str]
    checked: list[str]
    skipped: list[str]
    baseline: str  # "base" or "name@vN"
    candidate: str
    baseline_run: str | None = None
    candidate_run: str | None = None
    deltas: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """Candidate (and baseline) means, flat, for MLflow and the registry row."""
        flat: dict[str, float] = {}
        for d in self.deltas:
            if d.get("b_mean") is not None:
                flat[d["name"]] = float(d["b_mean"])
            if d.get("a_mean") is not None:
                flat[f"baseline_{d['name']}"] = float(d["a_mean"])
        return flat


def tolerances_from_mapping(data: Mapping[str, Any] | None,
                            defaults: Mapping[str, Tolerance] = DEFAULT_TOLERANCES,
                            ) -> dict[str, Tolerance]:
    """A request's tolerances merged over the harness defaults, with the same meaning as a
    ``customllm eval gate --tolerances`` file: a number (absolute), a mapping of absolute /
    relative / require_significance, or null to leave the metric unchecked."""
    merged = dict(defaults)
    for name, value in (data or {}).items():
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, Mapping):
            unknown = set(value) - {"absolute", "relative", "require_significance"}
            if unknown:
                raise GateConfigError(f"{name}: unknown key(s) {sorted(unknown)}")
            significance = value.get("require_significance", True)
            if not isinstance(significance, bool):
                raise GateConfigError(f"{name}.require_significance must be true or false")
            merged[name] = Tolerance(absolute=_amount(name, value.get("absolute", 0.0)),
                                     relative=_amount(name, value.get("relative", 0.0)),
                                     require_significance=significance)
        else:
            merged[name] = Tolerance(absolute=_amount(name, value))
    return merged


def _amount(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise GateConfigError(f"tolerance {name} must be a non-negative number, got {value!r}")
    return float(value)


def decide(per_case_baseline: Mapping[str, Mapping[str, float | None]],
           per_case_candidate: Mapping[str, Mapping[str, float | None]],
           tolerances: Mapping[str, Tolerance], *, baseline: str, candidate: str,
           n_boot: int = 1000, seed: int = 0, baseline_run: str | None = None,
           candidate_run: str | None = None) -> GateDecision:
    """Compare two runs' per-case scores and apply the harness's gate rule."""
    metrics = [*COMPARE_METRICS, *(m for m in tolerances if m not in COMPARE_METRICS)]
    deltas = compare(per_case_baseline, per_case_candidate, metrics=metrics, n_boot=n_boot,
                     seed=seed)
    verdict = gate(deltas, tolerances)
    reason = ("passed: " + ", ".join(verdict.checked) + " within tolerance"
              if verdict.passed else "failed: " + "; ".join(verdict.failures))
    return GateDecision(passed=verdict.passed, failures=list(verdict.failures),
                        checked=list(verdict.checked), skipped=list(verdict.skipped),
                        baseline=baseline, candidate=candidate, baseline_run=baseline_run,
                        candidate_run=candidate_run, deltas=[_delta(d) for d in deltas],
                        reason=reason)


def not_run(reason: str, candidate: str) -> GateDecision:
    """No evaluation (no test set, or promotion not wanted): never a pass."""
    return GateDecision(passed=False, failures=[reason], checked=[], skipped=[],
                        baseline="-", candidate=candidate, reason=reason)


def _delta(d: MetricDelta) -> dict[str, Any]:
    return {"name": d.name, "a_mean": d.a_mean, "b_mean": d.b_mean, "delta": d.delta,
            "lo": d.lo, "hi": d.hi, "n": d.n, "higher_is_better": d.higher_is_better,
            "statistic": d.statistic}


@dataclass(frozen=True)
class GateRun:
    """Everything one gate evaluation needs; ``baseline_adapter`` None means the base model."""

    cases: Sequence[EvalCase]
    testset: str
    baseline_adapter: str | None
    candidate_adapter: str
    tolerances: Mapping[str, Tolerance]
    domain: str = "default"
    top_k: int | None = None
    max_tokens: int | None = None
    doc_id_prefix: str | None = None
    n_boot: int = 1000
    timeout_s: float = 300.0
    concurrency: int = 2


def run_gate(spec: GateRun, bootstrap: str, engine: Engine) -> GateDecision:
    """Evaluate baseline and candidate through the rag worker, then :func:`decide`. Blocking
    (it runs its own event loop): call it from the job's thread."""
    from services.common.evaluation.runner import run_eval
    from services.common.evaluation.runs import build_run_config, load_run
    from services.common.rpc import ReplyClient

    client = ReplyClient(bootstrap, client_id="customllm-finetune-gate")
    try:
        run_ids = []
        for adapter in (spec.baseline_adapter, spec.candidate_adapter):
            config = build_run_config(spec.testset, spec.cases, domain=spec.domain,
                                      adapter=adapter, top_k=spec.top_k,
                                      max_tokens=spec.max_tokens,
                                      doc_id_prefix=spec.doc_id_prefix)
            run_ids.append(asyncio.run(run_eval(
                spec.cases, config, client, engine, concurrency=spec.concurrency,
                progress=False, embed=None, timeout_s=spec.timeout_s, n_boot=spec.n_boot)))
    finally:
        client.close()
    baseline, candidate = (load_run(engine, run_id) for run_id in run_ids)
    return decide(baseline.by_case(), candidate.by_case(), spec.tolerances,
                  baseline=spec.baseline_adapter or "base", candidate=spec.candidate_adapter,
                  n_boot=spec.n_boot, baseline_run=run_ids[0], candidate_run=run_ids[1])
