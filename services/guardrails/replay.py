"""Replay: re-score past requests with a candidate policy and report what would change.

A compliance officer about to tighten a threshold wants to know, before the change goes live,
which requests it would have blocked, let through or redacted differently. The evidence is
already on Kafka: the questions on ``rag.requests`` (input stage), the drafts with their
evidence on ``rag.drafts`` (output stage) and the decisions actually taken on
``guardrails.events``. Replay reads a time window of each (from the offsets for the start
timestamp), runs the checks with the candidate policy, and diffs the new actions against the
recorded ones, per request and check.

Reading is separate from the diff (a pure function), so the diff is unit-tested on
hand-written decisions and the reading on the real broker.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from pydantic import ValidationError

from services.common import kafka_offsets as offsets
from services.common.config import Settings
from services.common.events import GuardrailEvent, RagReply, RagRequest
from services.common.exceptions import CustomLLMError
from services.common.topics import GUARDRAILS_EVENTS, RAG_DRAFTS, RAG_REQUESTS
from services.guardrails.checks.results import StageVerdict
from services.guardrails.policy import Policy, PolicyError, PolicyStore, parse_policy

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
READ_TIMEOUT_S = 10.0

CheckKey = tuple[str, str]  # (stage, check)


class ReplayError(CustomLLMError):
    """The replay window or the candidate policy is unusable."""


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """``2h``, ``30m``, ``1d`` (that long ago) or an ISO 8601 time (no zone = UTC)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ReplayError(f"not a duration (2h, 30m, 1d) or ISO 8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def load_candidate(path: Path) -> Policy:
    """A policy file to try out; its name need not match the file (it is not installed)."""
    try:
        return parse_policy(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ReplayError(f"cannot read policy {path}: {exc}") from exc
    except PolicyError as exc:
        raise ReplayError(str(exc)) from exc


# ------------------------------------------------------------------------------ the diff


@dataclass(frozen=True)
class Outcome:
    """One check's decision: recorded (old) or re-scored (new)."""

    action: str
    triggered: bool
    score: float | None


@dataclass(frozen=True)
class Change:
    request_id: str
    stage: str
    check: str
    old: Outcome | None  # None: not in the audit trail (the check did not run then)
    new: Outcome | None  # None: could not be re-scored (e.g. no draft was ever generated)


@dataclass
class ReplayReport:
    since: datetime
    until: datetime | None
    policy: str
    requests: int = 0
    drafts: int = 0
    unaudited: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    newly_blocked: list[str] = field(default_factory=list)
    newly_allowed: list[str] = field(default_factory=list)
    changed_redactions: list[str] = field(default_factory=list)
    not_rescorable: list[str] = field(default_factory=list)

    @property
    def changed_requests(self) -> list[str]:
        return sorted({c.request_id for c in self.changes})

    def to_markdown(self) -> str:
        until = self.until.isoformat() if self.until else "now"
        lines = [
            "# Guardrails replay", "",
            f"- window: {self.since.isoformat()} → {until}",
            f"- candidate policy: {self.policy}",
            f"- requests re-scored: {self.requests} (input stage), {self.drafts} drafts "
            "(output stage)",
            f"- requests with a changed decision: {len(self.changed_requests)}",
            f"- newly blocked: {len(self.newly_blocked)}",
            f"- newly allowed: {len(self.newly_allowed)}",
            f"- changed redactions: {len(self.changed_redactions)}",
        ]
        if self.not_rescorable:
            lines.append(f"- newly allowed at input, output never generated (not re-scored): "
                         f"{len(self.not_rescorable)}")
        if self.unaudited:
            lines.append(f"- requests without recorded decisions (skipped): "
                         f"{len(self.unaudited)}")
        for title, ids in (("Newly blocked", self.newly_blocked),
                           ("Newly allowed", self.newly_allowed),
                           ("Changed redactions", self.changed_redactions)):
            if ids:
                lines += ["", f"## {title}", "", *(f"- `{i}`" for i in ids)]
        lines += ["", "## Changes per request and check", ""]
        if not self.changes:
            lines.append("No decision would change.")
        else:
            lines += ["| request_id | stage | check | old action | new action | old score | "
                      "new score |", "|---|---|---|---|---|---|---|"]
            for c in self.changes:
                lines.append(f"| `{c.request_id}` | {c.stage} | {c.check} | "
                             f"{_action(c.old)} | {_action(c.new)} | {_score(c.old)} | "
                             f"{_score(c.new)} |")
        return "\n".join(lines) + "\n"


def _action(outcome: Outcome | None) -> str:
    return "—" if outcome is None else outcome.action


def _score(outcome: Outcome | None) -> str:
    return "—" if outcome is None or outcome.score is None else f"{outcome.score:.4f}"


def recorded_outcomes(events: Iterable[GuardrailEvent]) -> dict[str, dict[CheckKey, Outcome]]:
    """request_id → (stage, check) → the recorded decision (the last one, if redelivered)."""
    found: dict[str, dict[CheckKey, Outcome]] = {}
    for event in events:
        found.setdefault(event.request_id, {})[(event.stage, event.check)] = Outcome(
            event.action, event.triggered, event.score)
    return found


def verdict_outcomes(verdicts: Iterable[StageVerdict]) -> dict[CheckKey, Outcome]:
    return {(v.stage, r.check): Outcome(r.action, r.triggered,
                                        None if r.score is None else round(float(r.score), 4))
            for v in verdicts for r in v.results}


def _blocked(outcomes: dict[CheckKey, Outcome]) -> bool:
    return any(o.triggered and o.action == "block" for o in outcomes.values())


def _redacting(outcomes: dict[CheckKey, Outcome]) -> set[CheckKey]:
    return {k for k, o in outcomes.items() if o.triggered and o.action == "redact"}


def diff(old: dict[str, dict[CheckKey, Outcome]], new: dict[str, dict[CheckKey, Outcome]],
         report: ReplayReport, output_missing: Iterable[str] = ()) -> ReplayReport:
    """Fill ``report`` with what differs between the recorded and the re-scored outcomes.

    A check's row appears when its action or triggered state changes (a score that moves
    without changing the action is not a change in what the reader gets). Requests missing
    from the audit trail are listed apart, not guessed. ``output_missing``: requests newly
    let through at input whose output stage never ran, so cannot be re-scored."""
    missing = set(output_missing)
    for request_id in sorted(new):
        recorded = old.get(request_id)
        if not recorded:
            report.unaudited.append(request_id)
            continue
        rescored = new[request_id]
        for key in sorted(set(recorded) | set(rescored)):
            before, after = recorded.get(key), rescored.get(key)
            if after is None and key[0] != "input" and request_id in missing:
                continue  # output never ran; reported as not_rescorable below
            if after is None and key[0] != "input" and _blocked(rescored):
                continue  # blocked at input now: the output stage would not run
            if before is None and after is not None and after.action == "skip":
                continue
            if (before is None or after is None or before.action != after.action
                    or before.triggered != after.triggered):
                report.changes.append(Change(request_id, key[0], key[1], before, after))
        was, now = _blocked(recorded), _blocked(rescored)
        if now and not was:
            report.newly_blocked.append(request_id)
        elif was and not now:
            report.newly_allowed.append(request_id)
            if request_id in missing:
                report.not_rescorable.append(request_id)
        if not now and not was and _redacting(recorded) != _redacting(rescored):
            report.changed_redactions.append(request_id)
    return report


# ------------------------------------------------------------------------------ reading Kafka


def read_window(bootstrap: str, topic: str, since: datetime, until: datetime | None,
                timeout_s: float = READ_TIMEOUT_S) -> list[Message]:
    """Every record of ``topic`` with a timestamp in [since, until), from the offsets
    ``offsets_for_times`` gives for ``since`` up to the end offsets when the read starts."""
    consumer: Consumer = offsets.open_consumer(bootstrap, "customllm-guardrails-replay",
                                               timeout_s)
    try:
        partitions = offsets.partitions_of(consumer, topic, timeout_s)
        if partitions is None:
            raise ReplayError(f"topic {topic} does not exist")
        starts = offsets.offsets_for_time(consumer, topic, partitions, since, timeout_s)
        ends = offsets.watermarks(consumer, topic, partitions, timeout_s)
        todo = {p: (start, ends[p][1]) for p, start in starts.items()
                if start is not None and start < ends[p][1]}
        if not todo:
            return []
        consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in todo.items()])
        found: list[Message] = []
        remaining = dict(todo)
        while remaining:
            message = consumer.poll(timeout_s)
            if message is None:
                # The end offset may be a control record that is never delivered: the
                # consumer's position says whether the partition was read through.
                positions = consumer.position([TopicPartition(topic, p) for p in remaining])
                for tp in positions:
                    if tp.offset >= remaining[tp.partition][1]:
                        del remaining[tp.partition]
                if remaining:
                    raise ReplayError(f"reading {topic} stalled (partitions "
                                      f"{sorted(remaining)} not read to their end)")
                break
            if message.error():
                continue
            partition = message.partition()
            if partition in remaining and message.offset() >= remaining[partition][1] - 1:
                del remaining[partition]
            millis = message.timestamp()[1]
            if until is not None and millis >= offsets.to_millis(until):
                continue
            if millis >= offsets.to_millis(since):
                found.append(message)
        return found
    finally:
        consumer.close()


def _models(messages: Sequence[Message], model: Any) -> list[Any]:
    out = []
    for message in messages:
        try:
            out.append(model.model_validate_json(message.value() or b""))
        except ValidationError:
            continue  # what the stage dead-lettered was never decided on
    return out


PolicyFor = Callable[[str | None], Policy]


def replay(bootstrap: str, since: datetime, until: datetime | None, policy_for: PolicyFor,
           policy_label: str, screen_input: Callable[[RagRequest, Policy], StageVerdict],
           screen_output: Callable[[RagReply, Policy], StageVerdict],
           domain: str | None = None) -> ReplayReport:
    """Re-score the window's requests and drafts with ``policy_for(domain or policy name)``.

    Drafts and decisions are read from ``since`` to now (they follow their request by the
    time the model took); only those of the window's requests count."""
    if until is not None and until <= since:
        raise ReplayError("--until must be later than --since")
    requests: dict[str, RagRequest] = {}
    for request in _models(read_window(bootstrap, RAG_REQUESTS, since, until), RagRequest):
        if domain is None or request.options.domain == domain:
            requests[request.request_id] = request  # a resent request: the last copy
    drafts = {d.request_id: d for d in _models(read_window(bootstrap, RAG_DRAFTS, since, None),
                                              RagReply) if d.request_id in requests}
    events = [e for e in _models(read_window(bootstrap, GUARDRAILS_EVENTS, since, None),
                                 GuardrailEvent) if e.request_id in requests]
    old = recorded_outcomes(events)
    new: dict[str, dict[CheckKey, Outcome]] = {}
    output_missing = []
    for request_id, request in requests.items():
        policy = policy_for(request.options.domain)
        verdicts = [screen_input(request, policy)]
        draft = drafts.get(request_id)
        if not verdicts[0].blocked:
            if draft is not None:
                verdicts.append(screen_output(draft, policy_for_output(policy_for, draft)))
            else:
                output_missing.append(request_id)
        new[request_id] = verdict_outcomes(verdicts)
    report = ReplayReport(since=since, until=until, policy=policy_label,
                          requests=len(requests), drafts=len(drafts))
    return diff(old, new, report, output_missing)


def policy_for_output(policy_for: PolicyFor, draft: RagReply) -> Policy:
    from services.guardrails.handlers import output_policy_name

    return policy_for(output_policy_name(draft))


def policy_source(candidate: Path | None, folder: Path | None) -> tuple[PolicyFor, str]:
    """The candidate file for every request, or the installed policies by domain."""
    if candidate is not None:
        policy = load_candidate(candidate)
        return (lambda _name: policy), f"{policy.policy_version} (from {candidate})"
    store = PolicyStore(folder)
    return store.get, f"installed policies in {store.folder}"


def run(settings: Settings, since: datetime, until: datetime | None,
        candidate: Path | None = None, domain: str | None = None) -> ReplayReport:
    """Replay with the real checks (the same code the service runs)."""
    from services.guardrails.config import guardrails_settings
    from services.guardrails.input_stage import load_input_deps, screen_conversation
    from services.guardrails.output_stage import load_output_deps, screen_output

    policy_for, label = policy_source(candidate, guardrails_settings().guardrails_policy_dir)
    input_deps, output_deps = load_input_deps(settings), load_output_deps(settings)
    return replay(settings.kafka_bootstrap, since, until, policy_for, label,
                  lambda request, policy: screen_conversation(
                      request.question, [turn.content for turn in request.history], policy,
                      input_deps)[0],
                  lambda draft, policy: screen_output(draft, policy, output_deps), domain)
