"""Stored runs as the CLI and tests use them: the run configuration a ``run`` records, loading
a run back, writing its reports and comparing two runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from services.common.evaluation import store
from services.common.evaluation.models import CaseResult, EvalCase, RunConfig
from services.common.evaluation.testsets import testset_hash

# Differences worth pointing out when two runs are compared (the ones that *define* a system
# under test, e.g. the domain, are expected to differ; the test set is not).
COMPARABILITY_KEYS = ("testset_hash", "cases_hash", "doc_id_prefix", "principal",
                      "retrieval_top_k", "temperature")
SYSTEM_KEYS = ("domain", "template_version", "adapter", "backend", "model", "top_k",
               "max_tokens")


def build_run_config(testset: Path | str, all_cases: Sequence[EvalCase],
                     limit: int | None = None, domain: str = "default",
                     adapter: str | None = None, top_k: int | None = None,
                     max_tokens: int | None = None, doc_id_prefix: str | None = None,
                     seed: int = 0) -> RunConfig:
    """The ``RunConfig`` of a run over the test set file ``testset`` (``all_cases``: every case
    in it; the hash versions the whole file, ``limit`` says which sample was taken)."""
    return RunConfig(testset=str(testset), testset_hash=testset_hash(all_cases), domain=domain,
                     adapter=adapter, top_k=top_k, limit=limit, seed=seed,
                     max_tokens=max_tokens, doc_id_prefix=doc_id_prefix)


@dataclass
class RunData:
    run: store.RunRecord
    results: list[CaseResult]
    per_case: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def by_case(self) -> dict[str, dict[str, Any]]:
        return {r.case_id: row for r, row in zip(self.results, self.per_case, strict=True)}


def load_run(engine: Engine, run_id: str) -> RunData:
    """A stored run with its results (by case id) and their summary.

    The summary is recomputed from the stored results with the run's bootstrap settings: for
    a completed run that reproduces the stored one exactly (same results in the same order,
    same seed), in the summary's own key order, which jsonb does not keep; for a running or
    failed run it covers what is stored so far.
    """
    from services.common.evaluation.metrics import METRIC_KEYS
    from services.common.evaluation.summary import summarize

    run = store.require_run(engine, run_id)
    stored = store.load_results(engine, run_id)
    results = [s.result for s in stored]
    order = {key: i for i, key in enumerate(METRIC_KEYS)}
    per_case = [dict(sorted(s.metrics.items(), key=lambda kv: (order.get(kv[0], len(order)),
                                                                 kv[0])))
                for s in stored]
    summary = summarize(per_case, results, n_boot=int(run.config.get("n_boot", 1000)),
                        seed=int(run.config.get("seed", 0)))
    return RunData(run, results, per_case, summary)


def ordered_config(config: dict[str, Any]) -> dict[str, Any]:
    """RunConfig's fields first, in their declared order, then the rest by name (jsonb
    returns keys in its own order)."""
    fields = [key for key in RunConfig.model_fields if key in config]
    return {key: config[key] for key in [*fields, *sorted(set(config) - set(fields))]}


def write_run_reports(engine: Engine, run_id: str, out_dir: Path) -> dict[str, Path]:
    """report.json / report.md / report.html of the run under ``out_dir/<run_id>/``."""
    from services.common.evaluation.report_json import write_reports

    data = load_run(engine, run_id)
    config = {**ordered_config(data.run.config), "run_status": data.run.status,
              "started_at": data.run.started_at.isoformat(),
              "finished_at": data.run.finished_at.isoformat() if data.run.finished_at else None}
    return write_reports(run_id, config, data.summary, data.results, data.per_case,
                         Path(out_dir) / run_id)


def comparability(a: store.RunRecord, b: store.RunRecord) -> tuple[list[str], list[str]]:
    """(problems, differences): settings that make the comparison questionable, and the
    settings of the system under test that differ (what the comparison is about)."""
    problems = [f"{key}: {a.config.get(key)!r} vs {b.config.get(key)!r}"
                for key in COMPARABILITY_KEYS if a.config.get(key) != b.config.get(key)]
    if a.testset_hash != b.testset_hash:
        problems.insert(0, f"different test sets: {a.testset} ({a.testset_hash[:12]}) vs "
                           f"{b.testset} ({b.testset_hash[:12]})")
    differences = [f"{key}: {a.config.get(key)!r} → {b.config.get(key)!r}"
                   for key in SYSTEM_KEYS if a.config.get(key) != b.config.get(key)]
    return problems, differences
