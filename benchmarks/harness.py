"""A private local stack for a benchmark run: own state directory and ports, stopped at exit,
so a benchmark never disturbs (or is disturbed by) `customllm up` or the test suite."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from services.common import kafka_auth

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

PORTS = {"CUSTOMLLM_KAFKA_PORT": "39192", "CUSTOMLLM_KAFKA_CONTROLLER_PORT": "39193",
         "CUSTOMLLM_POSTGRES_PORT": "35532"}


def wait_http(url: str, timeout_s: float = 300) -> None:
    """Until ``url`` answers 200 (a service of the private stack has started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - localhost
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 in {timeout_s:.0f} s")


def cpu_probe_s(repeat: int = 3) -> float:
    """Seconds one core takes for a fixed pure-Python loop, best of ``repeat``: a rough gauge of
    how fast the shared machine was during a run (0.36 s on a quiet day, up to 0.64 s on a busy
    one). The load average says how many processes wanted a core, not how fast the cores were.
    Only a gauge: on one busy day native code (ONNX, spaCy) slowed 1.5–2× while this moved
    1.15×; compare code changes in alternating runs on one day, not across days."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        sum(i * i for i in range(5_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def configure_environment() -> Path:
    """Must run before any project module reads its settings."""
    state = Path(tempfile.mkdtemp(prefix="customllm-bench-"))
    os.environ.update(PORTS)
    os.environ.update({"CUSTOMLLM_STATE_DIR": str(state), "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "CUSTOMLLM_LOG_LEVEL": "WARNING",
                       "CUSTOMLLM_KAFKA_BOOTSTRAP": f"127.0.0.1:{PORTS['CUSTOMLLM_KAFKA_PORT']}",
                       # The harness acts as the broker's admin; workers run as themselves.
                       "CUSTOMLLM_KAFKA_USERNAME": "admin",
                       "CUSTOMLLM_KAFKA_SASL_MECHANISM": "PLAIN"})
    os.environ.pop("CUSTOMLLM_DATABASE_URL", None)
    return state


@contextmanager
def running_database(state: Path) -> Iterator[Engine]:
    """Postgres with the schema, and an engine on it: for a benchmark that times a stage the
    way it runs deployed (the input stage's attack-corpus lookup) without Kafka."""
    from services.common import migrate
    from services.common.config import get_settings
    from services.common.db import make_engine
    from services.stack import postgres

    settings = get_settings()
    engine = None
    try:
        postgres.start(state, settings.postgres_port)
        migrate.upgrade(settings.sqlalchemy_url, embedding_model_id=settings.embedding_model_id)
        engine = make_engine(settings.sqlalchemy_url, pool_size=2)
        yield engine
    finally:
        if engine is not None:
            engine.dispose()
        postgres.stop(state)


@contextmanager
def running_stack(state: Path, workers: dict[str, int], kafka_heap: str = "1g"
                  ) -> Iterator[None]:
    """Kafka + Postgres + migrations + topics + ``workers`` (name → replicas)."""
    from confluent_kafka.admin import AdminClient

    from services.common import kafka_admin
    from services.common.config import get_settings
    from services.stack import kafka, security
    from services.stack import services as worker_procs

    settings = get_settings()
    try:
        with running_database(state):
            try:
                kafka.start(state, settings.kafka_port, settings.kafka_controller_port,
                            kafka_heap)
                security.provision_all(settings)
                kafka_admin.ensure_topics(settings.kafka_bootstrap, settings.topic_partitions, 1)
                for name, replicas in workers.items():
                    for index in range(replicas):
                        worker_procs.start(state, name, instance=f"{name}-{index}")
                admin = AdminClient({**kafka_auth.client_config(settings.kafka_bootstrap)})
                for name in workers:
                    _wait_group(admin, f"customllm-{name}", workers[name],
                                lambda: len(worker_procs.running(state)) == sum(workers.values()))
                # Release the client while the broker is up: destroying it after Kafka stopped
                # blocks forever (confluent-kafka 2.16).
                del admin
                yield
            finally:
                for name in worker_procs.running(state):
                    worker_procs.stop(state, name)
                kafka.stop(state)
    finally:
        if os.environ.get("CUSTOMLLM_BENCH_KEEP_STATE") != "1":
            shutil.rmtree(state, ignore_errors=True)


def _wait_group(admin: object, group: str, members: int, alive: Callable[[], bool],
                timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"a worker exited while {group} was forming; see the logs")
        try:
            found = admin.describe_consumer_groups([group])[group].result(timeout=5)  # type: ignore[attr-defined]
            if found.state.name == "STABLE" and len(found.members) >= members:
                return
        except Exception:  # noqa: BLE001 - the group does not exist until a member joins
            pass
        time.sleep(0.5)
    raise RuntimeError(f"consumer group {group} did not reach {members} member(s)")
