"""The finetune worker: ``finetune.requests`` → the job table (intake), and a job executor
thread that trains, evaluates, registers and promotes (see ``executor.py``).

Intake and execution are separate on purpose: the Faust agent only validates a request and
records it idempotently (a redelivered job is not queued twice), so consuming never waits for
training; any number of workers then claim jobs from Postgres with ``SKIP LOCKED``.

Run it with ``python -m services.finetune``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from opentelemetry import trace

from services.common.config import get_settings
from services.common.db import make_engine
from services.common.events import FinetuneEvent, FinetuneRequest
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.processor import Emit, Inbound, Outcome, StreamProcessor, attach, done
from services.common.producer import flush, send
from services.common.streaming import make_app
from services.common.topics import FINETUNE_EVENTS, FINETUNE_REQUESTS, FINETUNE_REQUESTS_DLQ
from services.finetune import auto_retrain, handlers, jobs
from services.finetune.config import APP_ID, SERVICE_NAME, finetune_config, finetune_settings
from services.finetune.executor import Executor

logger = logging.getLogger(__name__)
settings = get_settings()
config = finetune_config(settings)
app = make_app(APP_ID, settings)
engine = make_engine(settings.sqlalchemy_url, pool_size=4)
executor = Executor(engine, config, settings)
policy = auto_retrain.RetrainPolicy.from_settings(finetune_settings())
if policy.enabled and (policy_problems := auto_retrain.problems(policy, config.base_model)):
    raise SystemExit("the retraining policy cannot queue valid jobs: " + "; ".join(policy_problems))


async def intake(message: Inbound) -> Outcome:
    """Record the job (idempotently: a redelivered job is not queued twice) or its cancel."""
    request = handlers.parse_request(message.value, config.base_model)
    trace.get_current_span().set_attributes({"job.id": request.job_id,
                                             "job.action": request.action})
    if request.action == "cancel":
        status = await asyncio.to_thread(jobs.request_cancel, engine, request.job_id,
                                         request.reason)
        log(logger, logging.INFO if status else logging.WARNING,
            "cancel requested" if status else "cancel for an unknown job",
            job_id=request.job_id, status=status)
    else:
        inserted = await asyncio.to_thread(jobs.insert_job, engine, request, config.base_model)
        log(logger, logging.INFO, "job queued" if inserted else "duplicate job ignored",
            job_id=request.job_id, adapter=request.adapter_name)
    await asyncio.to_thread(executor.relay)
    return done()


async def reject(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    """A ``failed`` event for a request that names its job, so whoever submitted it (and is
    following finetune.events) learns why at once. Not when a job of that id is already
    stored: the refused message did not touch it, and a ``failed`` event would contradict the
    job's real state for everyone following it (its own events stand; the DLQ keeps why)."""
    try:
        job_id = json.loads(message.value or b"").get("job_id")
    except (ValueError, AttributeError):
        return ()
    if not isinstance(job_id, str) or not job_id:
        return ()
    if await asyncio.to_thread(jobs.get_job, engine, job_id) is not None:
        return ()
    failed = FinetuneEvent(job_id=job_id, status="failed", error=f"rejected: {error.reason}"[:4000])
    return (Emit(FINETUNE_EVENTS, job_id.encode(), failed.to_json()),)


attach(app, StreamProcessor(service=SERVICE_NAME, source=FINETUNE_REQUESTS,
                            dead_letters=FINETUNE_REQUESTS_DLQ, process=intake,
                            on_dead_letter=reject, span_name="finetune.intake"))


@app.task
async def start_executor() -> None:
    """The executor runs in its own thread for the life of the worker; when Faust stops this
    task is cancelled and the executor told to stop (a running job pauses at its next step
    and is resumed by the next worker that claims it)."""
    thread = threading.Thread(target=executor.run_forever, daemon=True, name="finetune-exec")
    thread.start()
    try:
        await asyncio.Event().wait()
    finally:
        executor.stopping.set()


def _publish(request: FinetuneRequest) -> None:
    """The policy's job goes through finetune.requests like anyone's, as this worker's own
    identity (its ACL may write that topic); the intake below then queues it once."""
    assert executor.producer is not None
    errors: list[str] = []
    send(executor.producer, FINETUNE_REQUESTS, request.job_id, request.to_json(), errors=errors)
    flush(executor.producer, errors, timeout_s=30)


_last_decision: list[str] = []


@app.timer(interval=policy.check_every_s)
async def retraining_policy() -> None:
    """Every ``CUSTOMLLM_FINETUNE_AUTO_CHECK_EVERY_S``: queue an automatic job when the
    retraining policy says so (see ``auto_retrain.py``). A decision that did not change since
    the previous check is logged at debug level only."""
    if not policy.enabled:
        return
    try:
        decision = await asyncio.to_thread(auto_retrain.tick, engine, policy, _publish)
    except Exception as exc:  # noqa: BLE001 - database or broker down: try at the next check
        log(logger, logging.ERROR, "retraining policy check failed", error=repr(exc))
        return
    changed = _last_decision != [decision.code, decision.reason]
    _last_decision[:] = [decision.code, decision.reason]
    log(logger, logging.INFO if decision.queue or changed else logging.DEBUG,
        "automatic fine-tuning job queued" if decision.queue else "no automatic job",
        adapter=policy.adapter, **auto_retrain.log_fields(decision))


@app.task
async def announce_policy() -> None:
    if policy.enabled:
        log(logger, logging.INFO, "retraining policy on", policy=policy.describe())
