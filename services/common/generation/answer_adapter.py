"""The shipped answer adapter: served by default for extractive answers of the local engine.

The adapter (``shipped/answers/``, built by ``customllm finetune build-default``, see
:mod:`services.finetune.default_adapter`) was trained on the compact prompt
(:mod:`evidence_prompt`) to copy the answer and cite it, or to say the "don't know" text. When a
request asks for no adapter and its answer is extractive, the local backend answers with it;
a request that names an adapter gets that one: on the compact prompt when its data card says it
learnt it (this adapter, or a fine-tuning job continued from it, ``finetune submit --from``),
on the full prompt otherwise. Free generation never uses it (it was trained for one format
only).

At worker start it is registered in the adapter registry as a version of ``answers`` and, when
its gate passed and no version of that name is promoted yet, promoted: so it shows in the
console and the CLI like any trained version, a person can retire it or promote a retrained
one, and the start never undoes that (registration is keyed by the weights' hash, so restarts
add nothing). Without the registry (no database), nothing is served by that name and answers
come from the base model under the constraint.

Settings (environment): ``CUSTOMLLM_ANSWER_ADAPTER_ENABLED`` (default true; false serves the
base model under the constraint), ``CUSTOMLLM_ANSWER_ADAPTER_NAME`` (the registry name served,
default ``answers``), ``CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN`` (the "don't know" threshold
on the adapter's own first-step scores; default: the one calibrated with the served version,
recorded in its ``gate.json`` (the shipped one's in ``shipped/answers/gate.json``); ``never``
answers with a span whenever there are passages, even where the adapter wrote "don't know";
``none`` keeps only the adapter's own "don't know").

A gate's margin is a number or ``"never"``: calibration found no margin that tells unanswerable
questions from answerable ones better than chance, so the scores decide nothing (the shipped
adapter's case; see ``benchmarks.answers.choose_margin``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.generation.evidence_prompt import PROMPT_VERSION
from services.common.logs import log

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped" / "answers"
GATE_FILE = "gate.json"
DATACARD_FILE = "datacard.json"
WEIGHTS = "adapter_model.safetensors"

logger = logging.getLogger(__name__)


NEVER = "never"  # a gate's margin when no margin told the two kinds apart on calibration


def gate_margin(value: Any) -> float | None:
    """A margin as a gate records it: a number, ``"never"`` (infinite: the scores never say
    "don't know"), or nothing."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if value == NEVER:
        return math.inf
    return None


def recorded_margin(margin: float | None) -> float | str | None:
    """How a gate records ``margin`` (JSON has no infinity)."""
    return NEVER if margin is not None and math.isinf(margin) else margin


def read_gate(folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """The gate record the answers benchmark wrote beside a version's weights (the shipped
    one's by default); registration copies it into the version folder."""
    return _read_json(folder / GATE_FILE)


def read_card(folder: Path = SHIPPED_DIR) -> dict[str, Any]:
    """The data card written with a version's weights (what it was trained on, and how)."""
    return _read_json(folder / DATACARD_FILE)


def _read_json(path: Path) -> dict[str, Any]:
    """The file's object, ``{}`` when it is missing or unreadable. Serving asks on every
    request (the promoted version may change under it), so a file is parsed again only when
    its modification time or size changed."""
    try:
        stat = path.stat()
    except OSError:
        return {}
    return dict(_parsed(str(path), stat.st_mtime_ns, stat.st_size))  # callers may add keys


@functools.lru_cache(maxsize=64)
def _parsed(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class AnswerAdapterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_ANSWER_ADAPTER_", extra="ignore")

    enabled: bool = True
    name: str = "answers"
    abstain_margin: float | None = None
    use_calibrated_margin: bool = True  # None above: take gate.json's calibrated margin

    @field_validator("abstain_margin", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("none", "off", ""):
            return None
        if isinstance(value, str) and value.strip().lower() == NEVER:
            return math.inf
        return value


@dataclass(frozen=True)
class AnswerAdapter:
    """What the local backend needs to answer with the adapter."""

    name: str
    abstain_margin: float | None
    # The margin is calibrated with one adapter's weights. When set, the served version's own
    # (its folder's gate.json, copied there at registration) wins, so an install that keeps an
    # earlier promoted version after an upgrade does not judge it by the new one's margin;
    # ``abstain_margin`` then serves only versions that carry none.
    per_version_margin: bool = False

    def margin_for(self, folder: Path) -> float | None:
        if self.per_version_margin:
            value = gate_margin(read_gate(folder).get("abstain_margin"))
            if value is not None:
                return value
        return self.abstain_margin


def question_words_inside(folder: Path) -> bool:
    """Whether this version was trained to copy answers that run through a word of the
    question (its data card's ``constraint`` says so): serving must apply the rule the weights
    were trained under, and versions without the record were trained under the stricter one."""
    constraint = read_card(folder).get("constraint")
    return isinstance(constraint, dict) and constraint.get("question_words_inside") is True


# what versions whose card does not record ``focus_sentences`` were trained on
LEGACY_FOCUS_SENTENCES = 3


def focus_sentences(folder: Path) -> int:
    """How many sentences about the question this version's compact prompt keeps (its data
    card's ``constraint``): the weights learnt one prompt length, so serving builds the prompt
    the served version was trained on, not the current recipe's."""
    constraint = read_card(folder).get("constraint")
    value = constraint.get("focus_sentences") if isinstance(constraint, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return LEGACY_FOCUS_SENTENCES


# what versions whose card does not name their prompt were trained on
LEGACY_PROMPT_VERSION = "compact-v1"


def prompt_version(folder: Path) -> str:
    """The compact prompt's version this version was trained on (its data card's
    ``prompt_version``): a server whose prompt builder has moved on must not feed these weights
    a prompt they never saw."""
    value = read_card(folder).get("prompt_version")
    return value if isinstance(value, str) and value else LEGACY_PROMPT_VERSION


def answers_on_compact_prompt(folder: Path) -> bool:
    """Whether this adapter version learnt the compact prompt this server builds, as its data
    card says outright (the shipped adapter, or a job continued from it): such a version is
    served on that prompt also when a request names it. A card without the record is an
    ordinary adapter, trained on the full prompt."""
    return read_card(folder).get("prompt_version") == PROMPT_VERSION


def from_settings(settings: AnswerAdapterSettings | None = None) -> AnswerAdapter | None:
    settings = settings or AnswerAdapterSettings()
    if not settings.enabled:
        return None
    margin = settings.abstain_margin
    if margin is None and settings.use_calibrated_margin and "abstain_margin" not in \
            settings.model_fields_set:
        margin = gate_margin(read_gate().get("abstain_margin"))
        return AnswerAdapter(settings.name, margin, per_version_margin=True)
    return AnswerAdapter(settings.name, margin)


def weights_hash(folder: Path = SHIPPED_DIR) -> str:
    return hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()


def install(db: Any, adapters_dir: Path, name: str = "answers", base_model: str = "",
            folder: Path = SHIPPED_DIR) -> str:
    """Register the shipped adapter as a version of ``name`` (once per weights: the version's
    hyperparameters record their hash) and promote it when its gate passed and nothing of that
    name is promoted. Returns what happened."""
    from services.common import adapter_registry as registry

    if not (folder / WEIGHTS).is_file():
        return "absent"
    from sqlalchemy import text

    gate = read_gate(folder)
    card = read_card(folder)
    digest = weights_hash(folder)
    with db.begin() as conn:  # one installer at a time (the rag and guardrails workers start)
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('customllm.shipped:' || :n))"),
                     {"n": name})
        version = next((v for v in registry.list_versions(db, name)
                        if v.hyperparameters.get("shipped_weights_sha256") == digest), None)
        if version is None:
            version = registry.register(
                db, name=name, source_dir=folder, adapters_dir=adapters_dir,
                base_model=base_model or card.get("base_model", ""), method="lora",
                job_id=None, snapshot_id=None, dataset_hash=_data_hash(card),
                hyperparameters={**card.get("training", {}), "shipped_weights_sha256": digest})
        recalibrated = bool(version.gate) and _follow_recalibration(Path(version.path), gate)
        if not version.gate or recalibrated:
            registry.record_evaluation(db, name, version.version, gate.get("metrics", {}),
                                       {**gate, "passed": bool(gate.get("passed"))},
                                       _card_markdown(card, gate))
        if recalibrated:
            log(logger, logging.INFO, "shipped answer adapter recalibrated",
                version=version.ref, abstain_margin=gate.get("abstain_margin"))
    if registry.promoted(db, name) is not None or version.status != "candidate":
        return f"registered {version.ref} ({version.status})"
    if not gate.get("passed"):
        return f"registered {version.ref} (gate not passed: not promoted)"
    registry.promote(db, name, version.version, adapters_dir)
    return f"promoted {version.ref}"


def _follow_recalibration(folder: Path, gate: dict[str, Any]) -> bool:
    """The registered copy of the shipped version takes the shipped gate when a release
    recalibrated the same weights (another margin, new figures): serving reads the margin from
    the version's folder, so without this an upgrade would keep the old calibration. Written
    atomically; False when it already matches or the folder is gone."""
    target = folder / GATE_FILE
    if not folder.is_dir() or read_gate(folder) == gate:
        return False
    staging = folder / f".{GATE_FILE}.tmp"
    staging.write_text(json.dumps(gate, indent=1, ensure_ascii=False) + "\n")
    staging.replace(target)
    return True


def install_from_settings(settings: Any) -> str:
    """:func:`install` against the configured database and adapters directory; a database
    that cannot be reached is logged, not raised (the base model still answers)."""
    from services.common.db import make_engine

    adapters_dir = settings.adapters_path
    answer = AnswerAdapterSettings()
    try:
        db = make_engine(settings.sqlalchemy_url, pool_size=1)
        try:
            outcome = install(db, adapters_dir, answer.name, settings.local_model_id)
        finally:
            db.dispose()
    except Exception as exc:  # noqa: BLE001 - serving must start without the registry
        outcome = f"not installed: {type(exc).__name__}: {str(exc)[:200]}"
    log(logger, logging.INFO, "answer adapter", outcome=outcome)
    return outcome


def _data_hash(card: dict[str, Any]) -> str | None:
    sources = card.get("sources") or {}
    joined = "".join(str(s.get("sha256", "")) for s in sources.values())
    return hashlib.sha256(joined.encode()).hexdigest() if joined else None


def _card_markdown(card: dict[str, Any], gate: dict[str, Any]) -> str:
    counts = card.get("counts", {})
    lines = [f"# {card.get('adapter', 'answers')} (shipped)", "",
             f"Base: {card.get('base_model', '?')}. Licence of the data: "
             f"{card.get('licence', '?')}.", "",
             f"Split: {card.get('split', '?')}.", "",
             f"Examples: {counts.get('total', '?')} "
             f"({json.dumps({k: v for k, v in counts.items() if isinstance(v, dict)})}).", "",
             f"Gate (held-out articles): {json.dumps(gate.get('metrics', {}))}; "
             f"passed: {bool(gate.get('passed'))}."]
    return "\n".join(lines)
