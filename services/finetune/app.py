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
from services.common.events import FinetuneEvent
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.processor import Emit, Inbound, Outcome, StreamProcessor, attach, done
from services.common.streaming import make_app
from services.common.topics import FINETUNE_EVENTS, FINETUNE_REQUESTS, FINETUNE_REQUESTS_DLQ
from services.finetune import handlers, jobs
from services.finetune.config import APP_ID, SERVICE_NAME, finetune_config
from services.finetune.executor import Executor

logger = logging.getLogger(__name__)
settings = get_settings()
config = finetune_config(settings)
app = make_app(APP_ID, settings)
engine = make_engine(settings.sqlalchemy_url, pool_size=4)
executor = Executor(engine, config, settings)


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


def reject(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    """A ``failed`` event for a request that names its job, so whoever submitted it (and is
    following finetune.events) learns why at once."""
    try:
        job_id = json.loads(message.value or b"").get("job_id")
    except (ValueError, AttributeError):
        return ()
    if not isinstance(job_id, str) or not job_id:
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
