"""The machine-readable report (report.json) and :func:`write_reports`, which writes all three.

report.json holds everything the other two show, so they can be re-rendered from it
(``render_markdown(json.loads(path.read_text()))``). Layout (``schema_version`` 1)::

    {"schema_version": 1, "kind": "customllm.evaluation.report", "run_id": ...,
     "config": {...},                       # as given (RunConfig.model_dump())
     "summary": {...},                      # summary.summarize()
     "worst_cases": [{"index", "case_id", "badness", "reasons"}],   # index into "cases"
     "cases": [{<CaseResult fields>, "metrics": {<score_case() keys>}}]}

No NaN or infinity is ever written (they would become ``null``; ``json`` is called with
``allow_nan=False``); keys keep their insertion order so two runs diff cleanly.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.common.evaluation.models import CaseResult
from services.common.evaluation.report_html import render_html
from services.common.evaluation.report_markdown import render_markdown
from services.common.evaluation.summary import worst_cases

__all__ = ["REPORT_SCHEMA_VERSION", "build_report", "json_safe", "write_reports", "write_text"]

REPORT_SCHEMA_VERSION = 1
WORST_CASES_KEPT = 20


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(allow_nan=False)`` accepts: non-finite floats
    become ``None``, numpy scalars/arrays Python values, tuples/sets lists, pydantic models
    dicts, other objects (paths, dates) their ``str``."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return [json_safe(v) for v in sorted(value, key=str)]
    if hasattr(value, "model_dump"):
        return json_safe(value.model_dump(mode="json"))
    if hasattr(value, "tolist"):  # numpy scalar or array
        return json_safe(value.tolist())
    return str(value)


def build_report(run_id: str, config: Mapping[str, Any] | Any, summary: Mapping[str, Any],
                 results: Sequence[CaseResult], per_case: Sequence[Mapping[str, float | None]],
                 ) -> dict[str, Any]:
    """The report as a JSON-safe dict (see the module docstring)."""
    if len(results) != len(per_case):
        raise ValueError(f"{len(per_case)} score rows for {len(results)} results")
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    cases = [{**r.model_dump(mode="json"), "metrics": dict(row)}
             for r, row in zip(results, per_case, strict=True)]
    return json_safe({
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "customllm.evaluation.report",
        "run_id": run_id,
        "config": dict(config or {}),
        "summary": dict(summary),
        "worst_cases": worst_cases(results, [dict(r) for r in per_case], n=WORST_CASES_KEPT),
        "cases": cases,
    })


def write_text(path: Path, text: str) -> Path:
    """Write atomically (temporary file in the same folder, then rename), so a reader never
    sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_reports(run_id: str, config: Mapping[str, Any] | Any, summary: Mapping[str, Any],
                  results: Sequence[CaseResult], per_case: Sequence[Mapping[str, float | None]],
                  out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.html`` (self-contained: inline CSS,
    charts as base64 PNG) into ``out_dir`` (created if missing).
    Returns ``{"json": path, "markdown": path, "html": path}``."""
    out_dir = Path(out_dir)
    report = build_report(run_id, config, summary, results, per_case)
    return {
        "json": write_text(out_dir / "report.json",
                           json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
                           + "\n"),
        "markdown": write_text(out_dir / "report.md", render_markdown(report)),
        "html": write_text(out_dir / "report.html", render_html(report)),
    }
