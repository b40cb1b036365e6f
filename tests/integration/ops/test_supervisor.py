"""The supervisor `customllm up` starts (services/stack/supervisor.py), on the real stack: a
worker killed with SIGKILL is started again (after its backoff, with its own Kafka identity,
and it rejoins its consumer group), the restart is counted with the last line of the worker's
log, and once the supervisor is stopped nothing comes back."""

from __future__ import annotations

import os
import signal

import pytest

from services.stack import processes, supervisor
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
