"""Evaluation defaults and small helpers shared by the runner and the CLI."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from services.common.events import Principal
from services.common.exceptions import CustomLLMError

if TYPE_CHECKING:
    from services.common.config import Settings
    from services.common.evaluation.compare import Tolerance

RETRIEVAL_TOP_K = 10  # ranked doc ids kept per case for hit@k / MRR / nDCG
DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT_S = 300.0  # per request, queueing in the rag worker included
REPORTS_SUBDIR = "eval-reports"  # under the state directory unless --out says otherwise
DEFAULT_N_BOOT = 1000
TEMPERATURE = 0.0  # greedy decoding: a rerun of the same system gives the same answers


class EvalConfigError(CustomLLMError):
    """A tolerance file or option that cannot be used."""


def principal_for_credential(settings: Settings, credential: str | None) -> Principal:
    """The principal a run is recorded under: what its credential resolves to in the key file
    this machine can read. The input guardrail resolves it again for every question, so a key
    this machine cannot check is recorded as such (and a bad one fails each case with the
    reason)."""
    from services.common import identity

    try:
        return identity.authenticator_from_settings(settings).verify(credential).principal
    except CustomLLMError:
        return Principal(id="unverified-here")


def reports_dir(settings: Settings) -> Path:
    return settings.state_path / REPORTS_SUBDIR


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261201-143005-3fa9c1``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def load_tolerances(path: Path, defaults: Mapping[str, Tolerance] | None = None,
                    ) -> dict[str, Tolerance]:
    """Gate tolerances from YAML, merged over ``defaults`` (``compare.DEFAULT_TOLERANCES``).

    Each key is a metric; its value is a number (an absolute tolerance: how much worse the
    candidate may be), a mapping with ``absolute``, ``relative`` (× |baseline|) and
    ``require_significance``, or ``null`` to leave the metric unchecked. A top-level
    ``tolerances:`` key holding the mapping is accepted too.
    """
    from services.common.evaluation.compare import DEFAULT_TOLERANCES, Tolerance

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EvalConfigError(f"{path}: cannot read tolerances: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("tolerances"), dict):
        data = data["tolerances"]
    if not isinstance(data, dict):
        raise EvalConfigError(f"{path}: expected a mapping of metric name to tolerance")
    merged: dict[str, Tolerance] = dict(DEFAULT_TOLERANCES if defaults is None else defaults)
    for name, value in data.items():
        name = str(name)
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, dict):
            unknown = set(value) - {"absolute", "relative", "require_significance"}
            if unknown:
                raise EvalConfigError(f"{path}: {name}: unknown key(s) {sorted(unknown)}; "
                                      "allowed: absolute, relative, require_significance")
            merged[name] = Tolerance(
                absolute=_non_negative(path, f"{name}.absolute", value.get("absolute", 0.0)),
                relative=_non_negative(path, f"{name}.relative", value.get("relative", 0.0)),
                require_significance=_flag(path, name, value.get("require_significance", True)))
        else:
            merged[name] = Tolerance(absolute=_non_negative(path, name, value))
    return merged


def _non_negative(path: Path, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise EvalConfigError(f"{path}: tolerance {name} must be a non-negative number, "
                              f"got {value!r}")
    return float(value)


def _flag(path: Path, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvalConfigError(f"{path}: {name}.require_significance must be true or false")
    return value
