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

import faust
from faust.types import EventT
from opentelemetry.trace import SpanKind

from services.common import telemetry
from services.common.config import get_settings
from services.common.db import make_engine
from services.common.dlq import send_to_dlq
from services.common.events import FinetuneEvent
from services.common.exceptions import InvalidEvent
from services.common.logs import log
from services.common.streaming import make_app
from services.common.topics import FINETUNE_EVENTS, FINETUNE_REQUESTS, FINETUNE_REQUESTS_DLQ
from services.finetune import handlers, jobs
from services.finetune.config import APP_ID, SERVICE_NAME, finetune_config
from services.finetune.executor import Executor

logger = logging.getLogger(__name__)
settings = get_settings()
config = finetune_config(settings)
app = make_app(APP_ID, settings)
tracer = telemetry.tracer(__name__)
engine = make_engine(settings.sqlalchemy_url, pool_size=4)
executor = Executor(engine, config, settings)

requests_topic = app.topic(FINETUNE_REQUESTS)
events_topic = app.topic(FINETUNE_EVENTS)
dlq_topic = app.topic(FINETUNE_REQUESTS_DLQ)


@app.agent(requests_topic)
async def intake(stream: faust.StreamT) -> None:
    async for event in stream.events():
        await handle_request(event)


async def handle_request(event: EventT) -> None:
    message = event.message
    with tracer.start_as_current_span("finetune.intake", kind=SpanKind.CONSUMER,
                                      context=telemetry.extract_context(message.headers)) as span:
        try:
            request = handlers.parse_request(message.value, config.base_model)
        except InvalidEvent as error:
            await send_to_dlq(dlq_topic, event, error, SERVICE_NAME)
            await _reject(message.value, error)
            return
        span.set_attributes({"job.id": request.job_id, "job.action": request.action})
        if request.action == "cancel":
            status = await asyncio.to_thread(jobs.request_cancel, engine, request.job_id,
                                             request.reason)
            log(logger, logging.INFO if status else logging.WARNING,
                "cancel requested" if status else "cancel for an unknown job",
                job_id=request.job_id, status=status)
        else:
            inserted = await asyncio.to_thread(jobs.insert_job, engine, request,
                                               config.base_model)
            log(logger, logging.INFO, "job queued" if inserted else "duplicate job ignored",
                job_id=request.job_id, adapter=request.adapter_name)
        await asyncio.to_thread(executor.relay)


async def _reject(value: bytes | None, error: InvalidEvent) -> None:
    """A ``failed`` event for a request that names its job, so whoever submitted it (and is
    following finetune.events) learns why at once."""
    try:
        job_id = json.loads(value or b"").get("job_id")
    except (ValueError, AttributeError):
        return
    if not isinstance(job_id, str) or not job_id:
        return
    failed = FinetuneEvent(job_id=job_id, status="failed", error=f"rejected: {error.reason}"[:4000])
    await (await events_topic.send(key=job_id.encode(), value=failed.to_json()))


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
