"""The retraining policy: the closed loop's last link (issue 17, item 3).

Answers that went wrong come back to the review queue as candidate examples
(``services/common/candidates.py``); SMEs approve them in the console. This module decides when
the approved examples are worth a new version: every ``CUSTOMLLM_FINETUNE_AUTO_CHECK_EVERY_S``
the finetune worker counts the approved examples (matching the policy's filter) that are **not
in the previous automatic job's snapshot**, and :func:`decide` says whether to queue a job:

* a previous automatic job of the adapter still queued, running or evaluating: wait;
* nothing new approved: wait;
* the previous automatic job is younger than the minimum interval: wait;
* at least ``min_new_examples`` new: queue (the threshold);
* a schedule (``every_s``) and that long since the previous automatic job: queue (the schedule).

Queueing snapshots the approved examples (the ordinary snapshot code: PII-scrubbed, with a
data card, content-addressed) and publishes a :class:`FinetuneRequest` on finetune.requests
whose job id is derived from the adapter name and the snapshot id. A crashed worker that
publishes again after a restart, or two workers that decide at the same moment, produce the
same job id, and the intake queues a job id once. The job then runs as any other: trained,
gated against the served version, promoted or left a candidate, each step on finetune.events
(the ``queued`` event says ``trigger: auto`` and why).

:func:`decide` is pure (unit-tested); :func:`loop_state` and :func:`tick` touch Postgres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.events import FinetuneDataset, FinetuneEvaluation, FinetuneRequest
from services.finetune.config import FinetuneSettings

REQUESTER = "retraining-policy"
LIVE = ("queued", "running", "evaluating")
Code = Literal["disabled", "live_job", "nothing_new", "too_soon", "below_threshold",
               "threshold", "schedule"]


@dataclass(frozen=True)
class RetrainPolicy:
    """The ``CUSTOMLLM_FINETUNE_AUTO_*`` settings, as the worker uses them."""

    enabled: bool
    adapter: str
    min_new_examples: int
    every_s: float | None = None
    min_interval_s: float = 0.0
    check_every_s: float = 60.0
    method: str = "lora"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    max_privacy: str | None = "internal"
    evaluation: FinetuneEvaluation | None = None

    @classmethod
    def from_settings(cls, own: FinetuneSettings) -> RetrainPolicy:
        evaluation = None
        if own.auto_testset or own.auto_evaluation:
            evaluation = FinetuneEvaluation.model_validate(
                {**own.auto_evaluation,
                 **({"testset": own.auto_testset} if own.auto_testset else {})})
        return cls(enabled=own.auto_enabled, adapter=own.auto_adapter,
                   min_new_examples=own.auto_min_new_examples, every_s=own.auto_every_s,
                   min_interval_s=own.auto_min_interval_s,
                   check_every_s=own.auto_check_every_s, method=own.auto_method,
                   hyperparameters=dict(own.auto_hyperparameters),
                   sources=tuple(sorted(set(own.auto_sources))),
                   tags=tuple(sorted(set(own.auto_tags))), max_privacy=own.auto_max_privacy,
                   evaluation=evaluation)

    def request(self, snapshot_id: str, reason: str, now: datetime) -> FinetuneRequest:
        return FinetuneRequest(
            job_id=job_id_for(self.adapter, snapshot_id), adapter_name=self.adapter,
            method=self.method,  # type: ignore[arg-type]
            dataset=FinetuneDataset(snapshot_id=snapshot_id),
            hyperparameters=dict(self.hyperparameters), evaluation=self.evaluation,
            promote="gate", requested_by=REQUESTER, reason=reason, trigger="auto",
            created_at=now)

    def describe(self) -> str:
        when = f"{self.min_new_examples} new approved example(s)"
        if self.every_s:
            when += f" or every {self.every_s:g} s with at least one"
        gate = ("not configured (versions stay candidates)" if self.evaluation is None
                else f"on {self.evaluation.testset or 'inline cases'}")
        return (f"{self.method} on {self.adapter!r} when {when}; filter sources="
                f"{list(self.sources) or 'any'} tags={list(self.tags) or 'any'} "
                f"max_privacy={self.max_privacy}; gate {gate}")


@dataclass(frozen=True)
class LoopState:
    """What the policy looks at: counted in Postgres by :func:`loop_state`."""

    new_examples: int  # approved, matching the filter, not in the last automatic snapshot
    last_job_id: str | None = None
    last_job_at: datetime | None = None
    last_snapshot_id: str | None = None
    live_job_id: str | None = None  # an automatic job of the adapter not finished yet
    live_status: str | None = None


@dataclass(frozen=True)
class Decision:
    queue: bool
    code: Code
    reason: str
    job_id: str | None = None
    snapshot_id: str | None = None


def decide(policy: RetrainPolicy, state: LoopState, now: datetime) -> Decision:
    """Whether to queue an automatic job now, and why (or why not)."""
    if not policy.enabled:
        return Decision(False, "disabled", "the retraining policy is off")
    if state.live_job_id is not None:
        return Decision(False, "live_job", f"automatic job {state.live_job_id} is "
                        f"{state.live_status or 'not finished'}; waiting for it")
    if state.new_examples <= 0:
        return Decision(False, "nothing_new", "no approved example since the last automatic "
                        "job's snapshot" if state.last_job_id else "no approved example yet")
    since = (now - state.last_job_at).total_seconds() if state.last_job_at else None
    if since is not None and since < policy.min_interval_s:
        return Decision(False, "too_soon", f"{state.new_examples} new approved example(s), "
                        f"but the last automatic job was {since:.0f} s ago (minimum interval "
                        f"{policy.min_interval_s:g} s)")
    if state.new_examples >= policy.min_new_examples:
        return Decision(True, "threshold", f"{state.new_examples} new approved example(s) "
                        f"reached the threshold of {policy.min_new_examples}")
    if policy.every_s and (since is None or since >= policy.every_s):
        return Decision(True, "schedule", f"schedule: {state.new_examples} new approved "
                        "example(s) and " + (f"{since:.0f} s since the last automatic job "
                                              if since is not None else "no automatic job yet")
                        + f" (every {policy.every_s:g} s)")
    return Decision(False, "below_threshold", f"{state.new_examples} of "
                    f"{policy.min_new_examples} new approved example(s)")


def job_id_for(adapter: str, snapshot_id: str) -> str:
    """One job per adapter and snapshot: the same decision made twice (a restart, two
    workers) names the same job, which the intake queues once."""
    return f"auto-{adapter[:100]}-{snapshot_id[:20]}"


# --- Postgres -----------------------------------------------------------------------------

def _filter_sql(policy: RetrainPolicy) -> tuple[str, dict[str, Any]]:
    """The snapshot filter of :func:`services.finetune.supervision.create_snapshot`, as SQL."""
    from services.finetune.supervision import PRIVACY_ORDER

    where = ["e.review_status = 'approved'"]
    params: dict[str, Any] = {}
    if policy.sources:
        where.append("e.source = ANY(:sources)")
        params["sources"] = list(policy.sources)
    if policy.tags:
        where.append("e.tags && CAST(:tags AS text[])")
        params["tags"] = list(policy.tags)
    if policy.max_privacy:
        where.append("e.privacy_class = ANY(:privacy)")
        params["privacy"] = list(PRIVACY_ORDER[:PRIVACY_ORDER.index(policy.max_privacy) + 1])
    return " AND ".join(where), params


def loop_state(engine: Engine, policy: RetrainPolicy) -> LoopState:
    where, params = _filter_sql(policy)
    with engine.connect() as conn:
        last = conn.execute(text(
            "SELECT job_id, created_at, request->'dataset'->>'snapshot_id' AS snapshot_id "
            "FROM finetune_jobs WHERE adapter_name = :a AND request->>'trigger' = 'auto' "
            "ORDER BY created_at DESC LIMIT 1"), {"a": policy.adapter}).first()
        live = conn.execute(text(
            "SELECT job_id, status FROM finetune_jobs WHERE adapter_name = :a "
            "AND request->>'trigger' = 'auto' AND status = ANY(:live) "
            "ORDER BY created_at LIMIT 1"), {"a": policy.adapter, "live": list(LIVE)}).first()
        new = conn.execute(text(
            f"SELECT count(*) FROM sft_examples e WHERE {where} AND NOT EXISTS ("
            "SELECT 1 FROM sft_snapshot_examples s WHERE s.snapshot_id = :last "
            "AND s.example_id = e.example_id)"),
            {**params, "last": last.snapshot_id if last else None}).scalar_one()
    return LoopState(new_examples=int(new), last_job_id=last.job_id if last else None,
                     last_job_at=last.created_at if last else None,
                     last_snapshot_id=last.snapshot_id if last else None,
                     live_job_id=live.job_id if live else None,
                     live_status=live.status if live else None)


def tick(engine: Engine, policy: RetrainPolicy, publish: Callable[[FinetuneRequest], None],
         now: datetime | None = None) -> Decision:
    """Decide; when the policy says so, snapshot the approved examples and publish the job."""
    from services.finetune import supervision

    now = now or datetime.now(UTC)
    state = loop_state(engine, policy)
    decision = decide(policy, state, now)
    if not decision.queue:
        return decision
    snapshot = supervision.create_snapshot(engine, sources=policy.sources, tags=policy.tags,
                                           max_privacy=policy.max_privacy)
    if snapshot.snapshot_id == state.last_snapshot_id:  # approvals withdrawn meanwhile
        return Decision(False, "nothing_new", "the approved examples are those of the last "
                        "automatic job's snapshot")
    request = policy.request(snapshot.snapshot_id, decision.reason, now)
    publish(request)
    return replace(decision, job_id=request.job_id, snapshot_id=snapshot.snapshot_id)


def problems(policy: RetrainPolicy, served_base: str) -> list[str]:
    """What would make every automatic job fail at intake, found when the worker starts."""
    from services.finetune.handlers import submit_problems

    probe = policy.request("0" * 64, "configuration check", datetime.now(UTC))
    return [f"CUSTOMLLM_FINETUNE_AUTO_*: {p}" for p in submit_problems(probe, served_base)]


def log_fields(decision: Decision) -> dict[str, Any]:
    return {k: v for k, v in asdict(decision).items() if v is not None}


__all__ = ["REQUESTER", "Decision", "LoopState", "RetrainPolicy", "decide", "job_id_for",
           "log_fields", "loop_state", "problems", "tick"]
