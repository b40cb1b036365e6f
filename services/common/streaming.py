"""Faust application factory with settings tuned for a reliable, quickly joining consumer group.

Values and keys are raw bytes: each service decodes and validates them itself, so a bad message
becomes a DLQ record instead of a serializer crash inside Faust.
"""

from __future__ import annotations

import faust

from services.common import kafka_auth
from services.common.config import Settings


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def make_app(app_id: str, settings: Settings) -> faust.App:
    datadir = settings.state_path / "faust" / app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        # The worker's own identity: the broker's ACLs decide what it may read and write.
        broker_credentials=kafka_auth.faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        # Our topics are declared and created by `customllm topics`, never by a worker.
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_max_request_size=8_388_608,
        consumer_max_fetch_size=8_388_608,
        stream_wait_empty=False,
        store="memory://",
        datadir=str(datadir),
    )
    # Faust's App offers no setting for this hook; agents pick it up when they are declared.
    app._on_agent_error = exit_on_agent_error  # type: ignore[method-assign]
    return app


async def exit_on_agent_error(agent: object, exc: BaseException) -> None:
    """Agent error policy: stop the whole worker.

    Faust would restart the agent in-process, and the new agent resumes *after* the events of
    the failed batch, which are then acknowledged with later offsets: silent loss. Exiting
    instead leaves the offsets at the last processed event, so the restarted worker (Kubernetes,
    Compose or `customllm up`) re-delivers the batch. Data errors never reach here: they are
    dead-lettered by the agent itself.
    """
    import logging
    import os

    logging.getLogger(__name__).critical("agent %s failed, exiting worker: %r", agent, exc,
                                         exc_info=exc)
    logging.shutdown()
    os._exit(70)
