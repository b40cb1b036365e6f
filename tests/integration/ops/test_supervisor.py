"""The supervisor `customllm up` starts (services/stack/supervisor.py), on the real stack: a
worker killed with SIGKILL is started again (after its backoff, with its own Kafka identity,
and it rejoins its consumer group), the restart is counted with the last line of the worker's
log, and once the supervisor is stopped nothing comes back. A database and a broker killed
the same way (private ones: the suite's are shared) come back after their backoff with every
committed row and every acknowledged record."""

from __future__ import annotations

import os
import signal
import socket

import psycopg
import pytest

from services.common import kafka_auth
from services.stack import kafka, local_secrets, postgres, processes, supervisor
from services.stack import services as worker_procs
from tests.support.stack import Workers, wait_for

pytestmark = pytest.mark.integration
NAME = "audit"  # a light worker with a Kafka identity; no other test of this module runs it


def _pid(stack) -> int | None:
    return processes.read_pid(worker_procs.run_dir(stack.state), NAME)


def test_one_look_restarts_an_exited_worker_only_after_its_backoff(stack):
    assert _pid(stack) is None
    worker = Workers(stack, {}, names=(NAME,))
    worker.start_all()
    try:
        plan, tracks = supervisor.Plan((NAME,)), {}
        assert supervisor.supervise_once(stack.state, plan, tracks, now=100.0) == []
        os.kill(_pid(stack), signal.SIGKILL)
        wait_for(lambda: _pid(stack) is None, 30, what="the worker to die")
        assert supervisor.supervise_once(stack.state, plan, tracks, now=101.0) == []
        assert supervisor.supervise_once(stack.state, plan, tracks, now=102.9) == []
        assert supervisor.supervise_once(stack.state, plan, tracks, now=103.0) == [NAME]
        assert _pid(stack) is not None
        worker.wait_joined(NAME)  # its own identity: the broker let it join its group
        assert tracks[NAME].restarts == 1
        assert supervisor.read_restarts(stack.state)[NAME]["restarts"] == 1
    finally:
        worker_procs.stop(stack.state, NAME)


def test_the_supervisor_process_brings_a_killed_worker_back_until_it_is_stopped(stack):
    assert _pid(stack) is None
    worker = Workers(stack, {}, names=(NAME,))
    worker.start_all()
    try:
        supervisor.start(stack.state, supervisor.Plan((NAME,)))
        wait_for(lambda: (worker_procs.log_path(stack.state, supervisor.NAME).exists()
                          and "supervising" in worker_procs.log_path(
                              stack.state, supervisor.NAME).read_text()),
                 60, what="the supervisor to start")
        first = _pid(stack)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: _pid(stack) not in (None, first), 30, what="the worker to be back")
        worker.wait_joined(NAME)
        record = supervisor.read_restarts(stack.state)[NAME]
        assert record["restarts"] == 1 and record["last_log_line"]
        assert supervisor.stop(stack.state)
        os.kill(_pid(stack), signal.SIGKILL)
        wait_for(lambda: _pid(stack) is None, 30, what="the worker to die")
        with pytest.raises(AssertionError):  # nobody restarts it now
            wait_for(lambda: _pid(stack) is not None, 5, what="a restart")
    finally:
        supervisor.stop(stack.state)
        worker_procs.stop(stack.state, NAME)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_and_restart(state, name, pid_of, port, start) -> None:
    """SIGKILL ``name``; one look during its 2 s backoff starts nothing, one after starts it."""
    plan, tracks = supervisor.Plan((name,)), {}
    assert supervisor.supervise_once(state, plan, tracks, 10.0, start) == []
    os.kill(pid_of(state), signal.SIGKILL)
    wait_for(lambda: pid_of(state) is None, 30, what=f"{name} to die")
    # A killed process's port can outlive its pid for a moment on a busy machine; a start then
    # fails and waits its next backoff step (tests/unit/stack/test_supervisor_logic.py).
    wait_for(lambda: not kafka.port_open(port), 30, what=f"the dead {name}'s port to close")
    assert supervisor.supervise_once(state, plan, tracks, 11.0, start) == []
    assert supervisor.supervise_once(state, plan, tracks, 13.0, start) == [name]
    assert supervisor.supervise_once(state, plan, tracks, 14.0, start) == []  # running now


def test_a_database_killed_with_sigkill_is_restarted_after_its_backoff_with_its_data(tmp_path):
    state, port = tmp_path / "state", _free_port()

    def start(state_dir, name, _env):  # start_process's branch, on this database's own port
        assert name == supervisor.POSTGRES
        return postgres.start(state_dir, port)

    def rows() -> list[tuple[str]]:
        with psycopg.connect(postgres.dsn(port, postgres.DATABASE, state)) as conn:
            return conn.execute("SELECT note FROM kept ORDER BY note").fetchall()

    postgres.start(state, port)
    try:
        with psycopg.connect(postgres.dsn(port, postgres.DATABASE, state)) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('committed before the crash')")
        _kill_and_restart(state, supervisor.POSTGRES, postgres.pid, port, start)
        assert postgres.pid(state) is not None
        assert rows() == [("committed before the crash",)]  # WAL recovery kept the commit
        record = supervisor.read_restarts(state)[supervisor.POSTGRES]
        assert record["restarts"] == 1 and record["last_log_line"] != "no log"
    finally:
        postgres.stop(state)


def test_a_broker_killed_with_sigkill_is_restarted_after_its_backoff_with_its_records(tmp_path):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    state, port, controller = tmp_path / "state", _free_port(), _free_port()

    def start(state_dir, name, _env):  # start_process's branch, on this broker's own ports
        assert name == supervisor.KAFKA
        return kafka.start(state_dir, port, controller, "256m")

    kafka.start(state, port, controller, "256m")
    config = kafka_auth.client_config(f"127.0.0.1:{port}",
                                      creds=local_secrets.admin_credentials(state))
    try:
        admin = AdminClient(config)  # kept referenced: the future needs its handle alive
        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(30)
        producer = Producer({**config, "acks": "all", "enable.idempotence": True})
        producer.produce("kept", b"acknowledged before the crash")
        assert producer.flush(30) == 0
        _kill_and_restart(state, supervisor.KAFKA, kafka.pid, port, start)
        consumer = Consumer({**config, "group.id": "after-the-crash",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.subscribe(["kept"])
            record = wait_for(lambda: consumer.poll(1.0), 60, what="the record after restart")
            assert record.error() is None and record.value() == b"acknowledged before the crash"
        finally:
            consumer.close()
        assert supervisor.read_restarts(state)[supervisor.KAFKA]["restarts"] == 1
    finally:
        kafka.stop(state)
