"""Running claimed jobs: train (resumable), evaluate, register, gate, promote.

The executor is a plain thread beside the Faust consumer, so hours of training never block
the event loop or its Kafka heartbeats. Each loop relays the event outbox, claims one job
(``jobs.claim_next``) and runs it to an end state. While a job runs a heartbeat thread renews
its lease and picks up a cancel request; training polls that through ``should_stop`` after
every optimizer step.

Resumption: the job's work folder ``<finetune_output_dir>/<job_id>/`` holds the training
checkpoints and, once training finished, ``training-result.json``. A worker that takes over a
job whose worker died resumes training from the newest checkpoint, or skips straight to
evaluation when training had finished; registration is idempotent per job.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from opentelemetry import trace
from sqlalchemy.engine import Engine

from services.common.config import Settings
from services.common.events import FinetuneEvent, FinetuneStatus
from services.common.exceptions import CustomLLMError
from services.common.logs import log
from services.common.producer import flush, make_producer, send
from services.common.topics import FINETUNE_EVENTS
from services.finetune import cards, jobs, registry
from services.finetune.config import FinetuneConfig
from services.finetune.gate import (
    GateDecision,
    GateRun,
    not_run,
    run_gate,
    tolerances_from_mapping,
)
from services.finetune.handlers import InvalidTransition, ProgressThrottle, version_label

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
RESULT_FILE = "training-result.json"


class FinetuneCorpusEmpty(CustomLLMError):
    """Continued pretraining found nothing its privacy and licence policy lets it train on."""


class LeaseLost(CustomLLMError):
    """Another worker took the job over (this one stalled past its lease): stop quietly."""


@dataclass
class Executor:
    """One worker's job runner. ``stopping`` ends the loop (and interrupts a job at its next
    step; the job is then resumed by whichever worker claims it next)."""

    engine: Engine
    config: FinetuneConfig
    settings: Settings
    worker_id: str = field(default_factory=lambda: f"finetune-{uuid.uuid4().hex[:8]}")
    stopping: threading.Event = field(default_factory=threading.Event)
    producer: Producer | None = None
    _relay_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.producer is None:
            self.producer = make_producer(self.config.kafka_bootstrap, self.worker_id)

    # -- the loop ------------------------------------------------------------------------------

    def run_forever(self) -> None:
        log(logger, logging.INFO, "finetune executor started", worker_id=self.worker_id)
        while not self.stopping.is_set():
            try:
                worked = self.run_once()
            except Exception as exc:  # noqa: BLE001 - database or broker down: retry later
                log(logger, logging.ERROR, "finetune executor loop failed", error=repr(exc))
                worked = False
            if not worked:
                self.stopping.wait(self.config.poll_s)

    def run_once(self) -> bool:
        """Relay pending events, claim one job and run it; False when there was none."""
        self.relay()
        claim = jobs.claim_next(self.engine, self.worker_id, self.config.lease_s,
                                self.config.max_attempts)
        if claim is None:
            return False
        self.relay()
        if claim.action in ("start", "resume"):
            JobRun(self, claim.job).run()
            self.relay()
        return True

    def relay(self) -> int:
        """Send the outbox's events (oldest first), then delete them; a failure keeps them
        for the next relay."""
        assert self.producer is not None
        with self._relay_lock, self.engine.begin() as conn:
            pending = jobs.pending_events(conn)
            if not pending:
                return 0
            errors: list[str] = []
            for _id, job_id, payload in pending:
                send(self.producer, FINETUNE_EVENTS, job_id,
                     FinetuneEvent.model_validate(payload).to_json(), errors=errors)
            flush(self.producer, errors, timeout_s=30)
            jobs.mark_sent(conn, [item[0] for item in pending])
        return len(pending)

    def emit_now(self, event: FinetuneEvent) -> None:
        """Progress events skip the outbox: they are frequent and the next one supersedes."""
        assert self.producer is not None
        send(self.producer, FINETUNE_EVENTS, event.job_id, event.to_json())


class JobRun:
    """One attempt at one job (see the module docstring for the phases)."""

    def __init__(self, executor: Executor, job: jobs.Job) -> None:
        self.x, self.job, self.request = executor, job, job.request
        self.name = job.adapter_name
        self.workdir = executor.config.output_dir / job.job_id
        self.progress: dict[str, Any] = dict(job.progress)
        self.owned, self.cancel_requested = True, False
        self._beat_stop = threading.Event()
        self.throttle = ProgressThrottle(executor.config.progress_every_s)

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> None:
        beat = threading.Thread(target=self._heartbeat, daemon=True,
                                name=f"heartbeat-{self.job.job_id}")
        beat.start()
        with tracer.start_as_current_span("finetune.job", attributes={
                "job.id": self.job.job_id, "job.attempt": self.job.attempt,
                "adapter.name": self.name}) as span:
            try:
                self._run()
            except LeaseLost as exc:
                log(logger, logging.WARNING, "job taken over by another worker",
                    job_id=self.job.job_id, reason=str(exc))
            except InvalidTransition as exc:
                log(logger, logging.WARNING, "job left by this worker", job_id=self.job.job_id,
                    reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - any failure ends the job with its reason
                from services.finetune.training import TrainingCancelled

                if isinstance(exc, TrainingCancelled) and not self.owned:
                    log(logger, logging.WARNING, "job taken over by another worker",
                        job_id=self.job.job_id)
                elif isinstance(exc, TrainingCancelled) and self.x.stopping.is_set() \
                        and not self.cancel_requested:
                    # The worker is shutting down: hand the job (and its checkpoint) to the
                    # next worker now rather than when the lease runs out.
                    jobs.release(self.x.engine, self.job.job_id, self.x.worker_id,
                                 self.job.attempt)
                    log(logger, logging.INFO, "job interrupted by shutdown, released",
                        job_id=self.job.job_id)
                elif isinstance(exc, TrainingCancelled) and self.cancel_requested:
                    self._end("cancelled", message=f"cancelled: {exc}")
                else:
                    span.record_exception(exc)
                    reason = f"{type(exc).__name__}: {exc}"[:4000]
                    log(logger, logging.ERROR, "job failed", job_id=self.job.job_id,
                        reason=reason)
                    self._end("failed", error=reason)
            finally:
                self._beat_stop.set()
                beat.join(timeout=10)

    def _heartbeat(self) -> None:
        interval = max(0.5, min(self.x.config.lease_s / 3, 5.0))
        while not self._beat_stop.wait(interval):
            try:
                owned, cancel = jobs.heartbeat(self.x.engine, self.job.job_id,
                                               self.x.worker_id, self.job.attempt,
                                               self.x.config.lease_s, self.progress)
            except Exception as exc:  # noqa: BLE001 - one missed beat is not fatal
                log(logger, logging.WARNING, "heartbeat failed", job_id=self.job.job_id,
                    error=repr(exc))
                continue
            self.owned, self.cancel_requested = owned, cancel

    def should_stop(self) -> bool:
        return self.cancel_requested or not self.owned or self.x.stopping.is_set()

    def _check(self) -> None:
        """Between phases: stop for a cancel, or when the job is no longer ours."""
        if not self.owned:
            raise LeaseLost(f"job {self.job.job_id} attempt {self.job.attempt} lost its lease")
        if self.cancel_requested:
            from services.finetune.training import TrainingCancelled

            raise TrainingCancelled(int(self.progress.get("step", 0)), None)

    def _event(self, status: FinetuneStatus, **fields: Any) -> FinetuneEvent:
        return FinetuneEvent(job_id=self.job.job_id, status=status, attempt=self.job.attempt,
                             worker_id=self.x.worker_id, adapter_name=self.name, **fields)

    def _end(self, status: FinetuneStatus, *, error: str | None = None,
             message: str | None = None) -> None:
        try:
            jobs.transition(self.x.engine, self.job.job_id, self.x.worker_id, self.job.attempt,
                            status, self._event(status, error=error, message=message or error),
                            error=error)
        except InvalidTransition as exc:
            log(logger, logging.WARNING, "could not close job", job_id=self.job.job_id,
                status=status, reason=str(exc))
        self.x.relay()

    # -- phases ------------------------------------------------------------------------------

    def _run(self) -> None:
        with self._mlflow() as run:
            training = self._train(run)
            self._check()
            jobs.transition(self.x.engine, self.job.job_id, self.x.worker_id, self.job.attempt,
                            "evaluating", self._event("evaluating", metrics=_loss(training),
                                                      message="registering and evaluating"),
                            result={"training": training})
            self.x.relay()
            kind = training.get("kind", "adapter")
            version = registry.register(
                self.x.engine, name=self.name, source_dir=Path(training["adapter_dir"]),
                adapters_dir=self.x.config.adapters_dir,
                base_model=training.get("base_model") or self.x.config.base_model,
                method=self.request.method, job_id=self.job.job_id,
                snapshot_id=training["snapshot_id"], dataset_hash=training["snapshot_id"],
                hyperparameters=training["hyperparameters"], mlflow_run_id=run.run_id,
                kind=kind, source_discarded=kind == "model")
            if kind == "model":
                # The registry holds the files now (linked, or copied across file systems);
                # the work copy's name is all that goes.
                shutil.rmtree(training["adapter_dir"], ignore_errors=True)
            decision = self._gate(version)
            self._check()
            metrics = {**_loss(training), **decision.metrics()}
            run.log_metrics({_mlflow_key(k): v for k, v in metrics.items()
                             if isinstance(v, int | float)})
            run.log_dict(decision.to_dict(), "gate.json")
            run.set_tag("gate", "passed" if decision.passed else "failed")
            card = self._card(version, training, decision, "candidate")
            registry.record_evaluation(self.x.engine, self.name, version.version, metrics,
                                       decision.to_dict(), card)
            promoted = False
            if decision.passed:
                registry.promote(self.x.engine, self.name, version.version,
                                 self.x.config.adapters_dir)
                card = self._card(version, training, decision, "promoted")
                registry.set_card(self.x.engine, self.name, version.version, card)
                promoted = True
            run.log_text(card, "adapter_card.md")
            run.set_tag("adapter", version.ref)
            label = version_label(version.version)
            jobs.transition(
                self.x.engine, self.job.job_id, self.x.worker_id, self.job.attempt, "completed",
                self._event("completed", adapter_version=label, metrics=metrics,
                            gate={"passed": decision.passed, "reason": decision.reason,
                                  "baseline": decision.baseline,
                                  "candidate": decision.candidate},
                            promoted=promoted,
                            message=f"{version.ref} registered"
                            + (" and promoted" if promoted else " as candidate")),
                adapter_version=version.version,
                result={"gate": decision.to_dict(), "promoted": promoted,
                        "adapter": version.ref})
            self.x.relay()
            log(logger, logging.INFO, "job completed", job_id=self.job.job_id,
                adapter=version.ref, promoted=promoted)

    @contextmanager
    def _mlflow(self) -> Iterator[Any]:
        """One MLflow run per job: created by the first attempt, reopened by a resume."""
        from services.finetune import tracking

        run_id = self.job.mlflow_run_id or self.job.result.get("mlflow_run_id")
        if run_id:
            from mlflow.tracking import MlflowClient

            uri = tracking.tracking_uri(self.x.settings)
            client = MlflowClient(tracking_uri=uri)
            client.update_run(run_id, status="RUNNING")
            handle = tracking.RunHandle(client, run_id, client.get_run(run_id).info.experiment_id,
                                        uri)
            handle.set_tag("attempt", str(self.job.attempt))
            try:
                yield handle
            except BaseException:
                client.set_terminated(run_id, status="FAILED")
                raise
            client.set_terminated(run_id, status="FINISHED")
            return
        params = {"job_id": self.job.job_id, "method": self.request.method,
                  **self.request.hyperparameters}
        tags = {"job_id": self.job.job_id, "adapter_name": self.name,
                "worker_id": self.x.worker_id, "attempt": str(self.job.attempt)}
        with tracking.mlflow_run(self.name, self.job.job_id, params, tags,
                                 settings=self.x.settings) as handle:
            jobs.set_mlflow_run(self.x.engine, self.job.job_id, handle.run_id)
            yield handle

    def _train(self, run: Any) -> dict[str, Any]:
        """Train (or resume, or find the finished result of an earlier attempt)."""
        done = self.workdir / RESULT_FILE
        if done.is_file():
            log(logger, logging.INFO, "training already finished, resuming at evaluation",
                job_id=self.job.job_id)
            return json.loads(done.read_text())
        from services.finetune import supervision, tracking
        from services.finetune.training import (
            TrainingConfig,
            is_model_method,
            train_adapter,
            train_model,
        )

        config = TrainingConfig.from_hyperparameters(
            {**self.request.hyperparameters, "method": self.request.method})
        kind = "model" if is_model_method(config.method) else "adapter"
        data: Any
        if config.method == "continued_pretraining":
            corpus = self._corpus()
            data, dataset_id, card_md = list(corpus.texts), corpus.corpus_id, corpus.card_markdown
        else:
            snapshot, data = supervision.load_snapshot(self.x.engine, self._snapshot_id())
            dataset_id, card_md = snapshot.snapshot_id, snapshot.card_markdown
        run.log_text(card_md, "data_card.md")
        options: dict[str, Any] = {}
        if config.init_adapter is not None:
            start = self._warm_start(config.init_adapter)
            config = dataclasses.replace(config, init_adapter=start.ref, **start.shape)
            options["init_adapter_dir"] = start.folder
            evaluation = self.request.evaluation
            options["domain"] = evaluation.domain if evaluation is not None else "default"
            run.set_tag("init_adapter", start.ref)
        train = train_model if kind == "model" else train_adapter
        result = train(data, config, self.workdir / ("model" if kind == "model" else "adapter"),
                       on_progress=self._on_progress,
                       checkpoint_dir=self.workdir / "checkpoints",
                       should_stop=self.should_stop, settings=self.x.settings, **options)
        # A model's weights are not copied into MLflow (the registry keeps them; the run
        # records where).
        tracking.log_training(run, result, card_markdown=None, log_adapter=kind == "adapter")
        summary = {
            "kind": kind,
            "adapter_dir": str(result.adapter_dir), "steps": result.steps,
            "final_loss": result.final_loss, "duration_s": round(result.duration_s, 3),
            "tokens_per_s": round(result.tokens_per_s, 2), "peak_memory_mb": result.peak_memory_mb,
            "base_model": result.base_model, "n_examples": result.n_examples,
            "resumed_from_step": result.resumed_from_step, "device": result.device,
            "snapshot_id": dataset_id, "data_card_markdown": card_md,
            "hyperparameters": config.as_dict(),
            "loss_curve": [[s, v] for s, v in result.loss_curve],
            "answer_examples": result.extra.get("answer_examples"),
        }
        staging = done.with_suffix(".tmp")
        staging.write_text(json.dumps(summary))
        staging.replace(done)  # written last: its presence means training is complete
        if kind == "model":
            # Training is complete, so no resume needs them; a full checkpoint (weights and
            # AdamW state) is three times the model.
            shutil.rmtree(self.workdir / "checkpoints", ignore_errors=True)
        return summary

    def _warm_start(self, ref: str) -> Any:
        """The adapter training starts from, resolved once and kept in the work folder: a
        resumed attempt starts from the same version even if another was promoted since."""
        from services.finetune import warm_start
        from services.finetune.handlers import base_aliases

        frozen = self.workdir / "init_adapter.json"
        if frozen.is_file():
            return warm_start.WarmStart.from_json(frozen.read_text())
        start = warm_start.resolve(self.x.engine, ref, base_aliases(self.x.config.base_model),
                                   self.request.hyperparameters)
        self.workdir.mkdir(parents=True, exist_ok=True)
        staging = frozen.with_suffix(".tmp")
        staging.write_text(start.to_json())
        staging.replace(frozen)  # whole or absent, whenever the worker dies
        return start

    def _corpus(self) -> Any:
        """The continued-pretraining corpus, selected once by the job's privacy and licence
        policy and kept in the work folder, so a resumed attempt trains on the same chunks even
        if documents changed since."""
        from services.finetune import corpus

        frozen = self.workdir / "corpus.json"
        if frozen.is_file():
            return corpus.Corpus.from_json(frozen.read_text())
        policy = corpus.CorpusPolicy.from_dataset(self.request.dataset)
        selected = corpus.select(corpus.load_candidates(self.x.engine, policy.sources), policy)
        if not selected.texts:
            raise FinetuneCorpusEmpty(
                "continued pretraining: no chunk may be trained on under the job's policy "
                f"({selected.policy['max_privacy']}, licences "
                f"{', '.join(selected.policy['licenses'])}); excluded: "
                f"{json.dumps(selected.excluded['by_reason'])}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        staging = frozen.with_suffix(".tmp")
        staging.write_text(selected.to_json())
        staging.replace(frozen)
        jobs.set_result(self.x.engine, self.job.job_id, snapshot_id=selected.corpus_id,
                        corpus={"included": selected.included, "excluded": selected.excluded})
        log(logger, logging.INFO, "continued-pretraining corpus selected",
            job_id=self.job.job_id, corpus_id=selected.corpus_id,
            chunks=selected.included["chunks"], excluded=selected.excluded["chunks"])
        return selected

    def _snapshot_id(self) -> str:
        """The request's snapshot, or one taken now from its filter; remembered on the job so
        a resumed attempt trains on the same data even if new examples were approved since."""
        from services.finetune import supervision

        known = self.job.result.get("snapshot_id")
        if known:
            return str(known)
        dataset = self.request.dataset
        assert dataset is not None
        if dataset.snapshot_id:
            snapshot_id = supervision.get_snapshot(self.x.engine, dataset.snapshot_id).snapshot_id
        else:
            snapshot_id = supervision.create_snapshot(
                self.x.engine, sources=dataset.sources, tags=dataset.tags,
                max_privacy=dataset.max_privacy).snapshot_id
        jobs.set_result(self.x.engine, self.job.job_id, snapshot_id=snapshot_id)
        return snapshot_id

    def _on_progress(self, progress: Any) -> None:
        total = int(progress.total_steps or 0)
        self.progress = {
            "step": int(progress.step), "max_steps": total, "epoch": round(progress.epoch, 4),
            "loss": progress.loss,
            "fraction": round(min(1.0, progress.step / total), 4) if total else None,
        }
        if self.throttle.should_send(time.monotonic(), progress.step, total):
            try:
                self.x.emit_now(self._event("running", progress=self.progress))
            except Exception as exc:  # noqa: BLE001 - a lost progress event is harmless
                log(logger, logging.WARNING, "progress event not sent", error=repr(exc))

    def _gate(self, version: registry.AdapterVersion) -> GateDecision:
        evaluation = self.request.evaluation
        if self.request.promote == "never":
            return not_run("promotion not requested (promote: never); the adapter stays a "
                           "candidate", version.ref)
        if evaluation is None or not (evaluation.cases or evaluation.testset):
            return not_run("no evaluation test set: the adapter stays a candidate (promote it "
                           "by hand with `customllm adapters promote`)", version.ref)
        from services.common.evaluation import testsets
        from services.common.evaluation.models import EvalCase

        if evaluation.cases:
            cases = [EvalCase.model_validate(c) for c in evaluation.cases]
            testset = f"finetune:{self.job.job_id}"
        else:
            cases = testsets.read_jsonl(Path(str(evaluation.testset)))
            testset = str(evaluation.testset)
        cases = testsets.sample(cases, evaluation.limit)
        current = registry.promoted(self.x.engine, self.name)
        baseline = current.ref if current is not None and current.version != version.version \
            else None
        return run_gate(GateRun(
            cases=cases, testset=testset, baseline_adapter=baseline,
            candidate_adapter=version.ref,
            tolerances=tolerances_from_mapping(evaluation.tolerances), domain=evaluation.domain,
            top_k=evaluation.top_k, max_tokens=evaluation.max_tokens,
            doc_id_prefix=evaluation.doc_id_prefix, n_boot=evaluation.n_boot,
            timeout_s=self.x.config.eval_timeout_s), self.x.config.kafka_bootstrap,
            self.x.engine)

    def _card(self, version: registry.AdapterVersion, training: dict[str, Any],
              decision: GateDecision, status: str) -> str:
        return cards.adapter_card(
            name=self.name, version=version.label, base_model=version.base_model,
            method=version.method, job_id=self.job.job_id, path=version.path, status=status,
            hyperparameters=training.get("hyperparameters") or {},
            training=training, gate=decision.to_dict(),
            dataset={"snapshot_id": training.get("snapshot_id"),
                     "n_examples": training.get("n_examples")},
            data_card_markdown=training.get("data_card_markdown"),
            mlflow_run_id=version.mlflow_run_id, kind=version.kind)


def _mlflow_key(name: str) -> str:
    """MLflow allows letters, digits, ``_-. /`` in metric names: ``hit@5`` → ``hit_at_5``."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name.replace("@", "_at_"))


def _loss(training: dict[str, Any]) -> dict[str, Any]:
    return {k: training[k] for k in ("final_loss", "steps", "tokens_per_s", "duration_s")
            if training.get(k) is not None}
