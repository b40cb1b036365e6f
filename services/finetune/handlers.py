"""Pure pieces of the finetune worker: request validation, the job state machine, adapter
references and progress throttling. No Kafka, no database: unit-tested on their own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from services.common.adapter_registry import version_label
from services.common.events import FinetuneDataset, FinetuneRequest, FinetuneStatus
from services.common.exceptions import CustomLLMError, InvalidEvent
from services.common.messages import decode_json, parse_model
from services.common.topics import FINETUNE_REQUESTS, spec
from services.finetune.config import MAX_REQUEST_BYTES

REQUEST_SCHEMA = spec(FINETUNE_REQUESTS).schema
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
LIVE: frozenset[str] = frozenset({"queued", "running", "evaluating"})
# Every move a job may make. A running job may go back to running (resumed by another worker
# after its first one died) and an evaluating one to running (re-evaluated after a crash).
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"running", "evaluating", "completed", "failed", "cancelled"}),
    "evaluating": frozenset({"running", "evaluating", "completed", "failed", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:@v?(?P<version>\d{1,9}))?$")


class FinetuneError(CustomLLMError):
    """A job that cannot go on: the message is the reason its ``failed`` event carries."""


class InvalidTransition(FinetuneError):
    """A job asked to move where its state machine does not allow (a bug or a stale worker)."""


def parse_request(value: bytes | None, served_base: str) -> FinetuneRequest:
    """Contract, model and meaning, in that order; any failure is an :class:`InvalidEvent` for
    the DLQ (and a ``failed`` event), never a crash of the intake."""
    request = parse_model(FinetuneRequest, decode_json(value or b"", MAX_REQUEST_BYTES,
                                                       REQUEST_SCHEMA))
    if request.action == "cancel":
        return request
    problems = submit_problems(request, served_base)
    if problems:
        raise InvalidEvent("schema_violation", "; ".join(problems))
    return request


def submit_problems(request: FinetuneRequest, served_base: str) -> list[str]:
    """What makes a submitted job unrunnable, found before it is queued (not hours later)."""
    from services.finetune.training import TrainingConfig

    problems: list[str] = []
    if not request.adapter_name or not _NAME.match(request.adapter_name):
        problems.append(f"adapter_name {request.adapter_name!r} is not a valid name")
    if request.base_model and request.base_model not in base_aliases(served_base):
        problems.append(f"base_model {request.base_model!r} is not the served base model "
                        f"{served_base!r}: an adapter must be trained on the weights it is "
                        "served with")
    if request.dataset is None:
        problems.append("dataset is required (a snapshot_id or a filter)")
    else:
        problems.extend(dataset_problems(request.method, request.dataset))
    if "method" in request.hyperparameters and \
            request.hyperparameters["method"] != request.method:
        problems.append("hyperparameters.method contradicts method")
    try:
        config = TrainingConfig.from_hyperparameters(
            {**request.hyperparameters, "method": request.method})
    except (ValueError, TypeError) as exc:
        problems.append(f"hyperparameters: {exc}")
    else:
        if config.init_adapter is not None:
            try:
                parse_ref(config.init_adapter)
            except FinetuneError as exc:
                problems.append(f"hyperparameters.init_adapter: {exc}")
    if request.evaluation is not None:
        problems.extend(evaluation_problems(request))
    return problems


def dataset_problems(method: str, dataset: FinetuneDataset) -> list[str]:
    """Continued pretraining reads the knowledge set's chunks (by document source, privacy
    class and licence); the other methods read supervision snapshots. A field that would be
    silently ignored by the chosen method is refused."""
    if method == "continued_pretraining":
        problems = []
        if dataset.snapshot_id:
            problems.append("dataset.snapshot_id: continued_pretraining trains on the knowledge "
                            "set's chunks, not on a supervision snapshot")
        if dataset.tags:
            problems.append("dataset.tags: continued_pretraining selects chunks by sources, "
                            "max_privacy and licenses, not by tags")
        if dataset.licenses is not None and not [x for x in dataset.licenses if x.strip()]:
            problems.append("dataset.licenses is empty: nothing could be trained on")
        return problems
    if dataset.licenses is not None:
        return [f"dataset.licenses applies to continued_pretraining, not {method}"]
    return []


def evaluation_problems(request: FinetuneRequest) -> list[str]:
    from pydantic import ValidationError

    from services.common.evaluation.models import EvalCase
    from services.finetune.gate import GateConfigError, tolerances_from_mapping

    evaluation = request.evaluation
    assert evaluation is not None
    problems = []
    if evaluation.testset and evaluation.cases:
        problems.append("evaluation: give a testset path or inline cases, not both")
    for index, case in enumerate(evaluation.cases):
        try:
            EvalCase.model_validate(case)
        except ValidationError as exc:
            problems.append(f"evaluation.cases[{index}]: {exc.errors()[0]['msg']}")
            break
    try:
        tolerances_from_mapping(evaluation.tolerances)
    except GateConfigError as exc:
        problems.append(f"evaluation.tolerances: {exc}")
    return problems


def base_aliases(served_base: str) -> set[str]:
    return {served_base, served_base.split("/")[-1]}


def check_transition(current: str, new: FinetuneStatus) -> None:
    if new not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(f"a {current} job cannot become {new}")


ReclaimAction = Literal["start", "resume", "fail", "cancel"]


def claim_action(status: str, attempt: int, max_attempts: int,
                 cancel_requested: bool) -> ReclaimAction:
    """What a worker does with a job it claimed: a queued job starts; a live job whose lease
    ran out (its worker died) is resumed while attempts remain, else failed; a job someone
    asked to cancel is cancelled instead of (re)started."""
    if cancel_requested:
        return "cancel"
    if status == "queued":
        return "start"
    if status in ("running", "evaluating"):
        return "resume" if attempt < max_attempts else "fail"
    raise InvalidTransition(f"a {status} job cannot be claimed")


def lost_worker_reason(worker_id: str | None, attempt: int, max_attempts: int) -> str:
    return (f"worker {worker_id or 'unknown'} stopped heartbeating during attempt {attempt} "
            f"(its lease expired: crashed or killed); gave up after {attempt} of "
            f"{max_attempts} attempt(s)")


# --- adapter references -------------------------------------------------------------------------

@dataclass(frozen=True)
class AdapterRef:
    """``name`` (the promoted version when served) or ``name@v3`` (that version)."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{version_label(self.version)}"


def parse_ref(text: str) -> AdapterRef:
    match = _REF.match(text.strip())
    if match is None:
        raise FinetuneError(f"{text!r} is not an adapter reference; expected NAME or NAME@vN")
    version = match.group("version")
    return AdapterRef(match.group("name"), int(version) if version else None)


# --- progress ------------------------------------------------------------------------------------

@dataclass
class ProgressThrottle:
    """At most one progress event every ``every_s`` seconds, plus the first and the last step,
    so a fast CPU run does not flood finetune.events and a slow one still shows life."""

    every_s: float
    last_sent: float | None = None
    sent: int = 0

    def should_send(self, now: float, step: int, total: int) -> bool:
        due = (self.last_sent is None or now - self.last_sent >= self.every_s
               or (total > 0 and step >= total))
        if due:
            self.last_sent, self.sent = now, self.sent + 1
        return due
