"""Handles on the real local stack for tests: start/stop, publish, wait, query."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common import kafka_admin, kafka_auth, migrate
from services.common.config import Settings, get_settings
from services.common.db import make_engine
from services.common.events import DocChange
from services.common.producer import flush, make_producer, send
from services.common.topics import DOCS_CHANGES
from services.stack import kafka, postgres, security
from services.stack import services as worker_procs

OWNER_FILE = "owner.pid"  # the test session whose stack lives in a state folder


def claim(state: Path) -> None:
    """Mark ``state`` as this test session's (read by ``stop_abandoned_postgres``)."""
    state.mkdir(parents=True, exist_ok=True)
    (state / OWNER_FILE).write_text(str(os.getpid()))


def abandoned_states(parent: Path, port: int, current: Path) -> list[Path]:
    """Test state folders under ``parent`` whose Postgres still runs on ``port`` while the
    session that started it is gone. Why: ``pg_ctl`` detaches the server, so a run that was
    killed leaves it holding the port, and every later run would fail to start its own."""
    import psutil

    found = []
    for state in sorted(parent.glob("customllm-test-*")):
        pid_file = postgres.PostgresPaths(state).data / "postmaster.pid"
        try:
            owner = int((state / OWNER_FILE).read_text())
            lines = pid_file.read_text().splitlines()
        except (OSError, ValueError):
            continue
        if state == current or psutil.pid_exists(owner) or len(lines) < 4:
            continue
        if lines[3].strip() == str(port) and postgres.pid(state) is not None:
            found.append(state)
    return found


def stop_abandoned_postgres(parent: Path, port: int, current: Path) -> list[Path]:
    """Stop (and remove) the state folders ``abandoned_states`` names; returns them."""
    import shutil

    stopped = abandoned_states(parent, port, current)
    for state in stopped:
        postgres.stop(state)
        shutil.rmtree(state, ignore_errors=True)
    return stopped


def wait_for(check: Callable[[], Any], timeout_s: float = 120, interval_s: float = 0.25,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


@dataclass
class LocalStack:
    state: Path
    settings: Settings
    engine: Engine

    @classmethod
    def start(cls, state: Path) -> LocalStack:
        settings = get_settings()
        try:
            kafka.start(state, settings.kafka_port, settings.kafka_controller_port,
                        settings.kafka_heap)
            security.provision_all(settings)
            postgres.start(state, settings.postgres_port)
            migrate.upgrade(settings.sqlalchemy_url, embedding_model_id=settings.embedding_model_id)
            kafka_admin.ensure_topics(settings.kafka_bootstrap, settings.topic_partitions,
                                      settings.topic_replication)
        except BaseException:
            kafka.stop(state)
            postgres.stop(state)
            raise
        return cls(state, settings, make_engine(settings.sqlalchemy_url))

    def stop(self) -> None:
        self.engine.dispose()
        kafka.stop(self.state)
        postgres.stop(self.state)

    def restart_kafka(self) -> None:
        """As `customllm up` does after a start: the platform's users and ACLs re-applied."""
        kafka.stop(self.state)
        kafka.start(self.state, self.settings.kafka_port, self.settings.kafka_controller_port,
                    self.settings.kafka_heap)
        security.provision_local(self.state, self.settings.kafka_bootstrap)

    # --- publishing -------------------------------------------------------------------------
    def publish(self, changes: Iterable[DocChange],
                headers: list[tuple[str, bytes]] | None = None) -> None:
        producer, errors = make_producer(self.settings.kafka_bootstrap, "tests"), []
        for change in changes:
            send(producer, DOCS_CHANGES, change.doc_id, change.to_json(), headers, errors)
        flush(producer, errors)

    def publish_raw(self, messages: Iterable[tuple[bytes | None, bytes | None]],
                    topic: str = DOCS_CHANGES) -> None:
        producer, errors = make_producer(self.settings.kafka_bootstrap, "tests-raw"), []
        for key, value in messages:
            while True:
                try:
                    producer.produce(topic, key=key, value=value,
                                     on_delivery=lambda err, _m: err and errors.append(str(err)))
                    break
                except BufferError:
                    producer.poll(0.5)
        flush(producer, errors)

    # --- reading ----------------------------------------------------------------------------
    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    def indexed_versions(self, doc_ids: list[str]) -> dict[str, int]:
        rows = self.query("SELECT doc_id, last_version FROM ingestion_status "
                          "WHERE doc_id = ANY(:ids) AND state IN ('indexed', 'deleted')",
                          ids=doc_ids)
        return {row[0]: row[1] for row in rows}

    def wait_indexed(self, expected: dict[str, int], timeout_s: float = 300) -> None:
        """Until every doc's status shows at least the expected version. A wait, not a speed
        check: it returns as soon as the documents are indexed; 180 s ran out once in a
        fresh-clone CI run on a host at half speed (the suite took 36 min instead of 24) while
        freshly started workers loaded their models."""
        ids = list(expected)

        def done() -> bool:
            got = self.indexed_versions(ids)
            return all(got.get(d, -1) >= v for d, v in expected.items())

        try:
            wait_for(done, timeout_s, what=f"{len(ids)} document(s) to be indexed")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n{self.indexing_report(ids[:5])}") from None

    def indexing_report(self, doc_ids: list[str]) -> str:
        """What a failed wait saw: the documents' status rows, whether the indexing workers
        run, and the tail of their logs (a CI log is all there is to read afterwards)."""
        rows = self.query("SELECT doc_id, state, last_version, error FROM ingestion_status "
                          "WHERE doc_id = ANY(:ids)", ids=doc_ids)
        lines = [f"status rows: {[tuple(r) for r in rows]}"]
        for name in ("ingest", "embedder"):
            pid = worker_procs.processes.read_pid(worker_procs.run_dir(self.state), name)
            log = worker_procs.log_path(self.state, name)
            tail = log.read_text(errors="replace")[-2500:] if log.exists() else "(no log)"
            lines.append(f"--- {name} (pid {pid}) log tail:\n{tail}")
        return "\n".join(lines)

    def status(self, doc_id: str) -> Any:
        rows = self.query("SELECT * FROM ingestion_status WHERE doc_id = :d", d=doc_id)
        return rows[0] if rows else None

    def chunk_rows(self, doc_ids: list[str]) -> list[tuple]:
        return [tuple(r) for r in self.query(
            "SELECT doc_id, ordinal, content_hash, chunk_id FROM chunks "
            "WHERE doc_id = ANY(:ids) ORDER BY doc_id, ordinal", ids=doc_ids)]

    def read_topic(self, topic: str, match: Callable[[bytes | None, bytes | None], bool],
                   expected: int, timeout_s: float = 60) -> list[tuple[bytes | None, bytes]]:
        """Read a topic from the beginning until ``expected`` matching records are seen."""
        consumer = Consumer({**kafka_auth.client_config(self.settings.kafka_bootstrap),
                             "group.id": f"tests-{time.time_ns()}", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
        metadata = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
        found: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(found) < expected and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                if match(message.key(), message.value()):
                    found.append((message.key(), message.value()))
        finally:
            consumer.close()
        return found


@dataclass
class Workers:
    """Stream-processing workers (each a Kafka consumer group member) as subprocesses."""

    stack: LocalStack
    env: dict[str, str]
    names: tuple[str, ...] = ("ingest", "embedder")
    pids: dict[str, int] = field(default_factory=dict)

    def start(self, name: str) -> None:
        self.pids[name] = worker_procs.start(self.stack.state, name, env=self.env)
        _STARTED_BY[name] = self
        self.wait_joined(name)

    def start_all(self) -> None:
        for name in self.names:
            self.pids[name] = worker_procs.start(self.stack.state, name, env=self.env)
            _STARTED_BY[name] = self
        for name in self.names:
            self.wait_joined(name)

    def wait_joined(self, name: str, timeout_s: float = 120) -> None:
        group = f"customllm-{name}"
        admin = AdminClient({**kafka_auth.client_config(self.stack.settings.kafka_bootstrap)})

        def joined() -> bool:
            if worker_procs.processes.read_pid(worker_procs.run_dir(self.stack.state),
                                               name) is None:
                log = worker_procs.log_path(self.stack.state, name).read_text()[-3000:]
                raise AssertionError(f"worker {name} exited:\n{log}")
            try:
                description = admin.describe_consumer_groups([group])[group].result(timeout=5)
            except Exception:  # noqa: BLE001 - group not known yet
                return False
            return description.state.name == "STABLE" and any(
                m.assignment.topic_partitions for m in description.members)

        wait_for(joined, timeout_s, interval_s=0.5, what=f"{name} worker to join its group")

    def kill9(self, name: str) -> None:
        pid = self.pids.pop(name)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: worker_procs.processes.read_pid(worker_procs.run_dir(self.stack.state),
                                                          name) is None, 30,
                 what=f"{name} to die")

    def stop_all(self) -> None:
        for name in self.names:
            worker_procs.stop(self.stack.state, name)
            if _STARTED_BY.get(name) is self:
                del _STARTED_BY[name]
        self.pids.clear()


# Which Workers started each running worker, so a test that must have a topic to itself can
# pause the session's workers and start them again exactly as they were (see ``paused``).
_STARTED_BY: dict[str, Workers] = {}


@contextmanager
def paused(stack: LocalStack, names: Iterable[str]) -> Iterator[None]:
    """Stop whichever of ``names`` run now (e.g. the end-to-end tests' rag and guardrails
    workers, which would otherwise answer the messages a test puts on their topics) and start
    them again afterwards with the settings they were started with."""
    run_dir = worker_procs.run_dir(stack.state)
    owners = {name: _STARTED_BY[name] for name in names
              if name in _STARTED_BY and worker_procs.processes.read_pid(run_dir, name)}
    for name in owners:
        worker_procs.stop(stack.state, name)
    try:
        yield
    finally:
        for name, owner in owners.items():
            owner.start(name)
