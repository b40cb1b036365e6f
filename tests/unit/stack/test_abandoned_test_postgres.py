"""A killed test run leaves its Postgres behind (pg_ctl detaches it); the next run finds it by
the state folder's owner and the port in its postmaster.pid, and stops only that one."""

import os
import subprocess

import pytest

from tests.support import stack as support

pytestmark = pytest.mark.unit


def _state(parent, name, owner, port, postmaster_pid):
    state = parent / f"customllm-test-{name}"
    data = state / "postgres" / "data"
    data.mkdir(parents=True)
    (state / support.OWNER_FILE).write_text(str(owner))
    (data / "postmaster.pid").write_text(f"{postmaster_pid}\n{data}\n1700000000\n{port}\n")
    return state


def _dead_pid() -> int:
    """A process that has exited and been reaped."""
    child = subprocess.Popen(["true"])  # noqa: S607
    child.wait()
    return child.pid


def test_only_a_running_server_of_a_dead_session_on_this_port_is_stopped(tmp_path, monkeypatch):
    alive, dead = os.getpid(), _dead_pid()
    orphan = _state(tmp_path, "orphan", owner=dead, port=25432, postmaster_pid=alive)
    _state(tmp_path, "live-session", owner=alive, port=25432, postmaster_pid=alive)
    _state(tmp_path, "other-port", owner=dead, port=35432, postmaster_pid=alive)
    _state(tmp_path, "server-gone", owner=dead, port=25432, postmaster_pid=dead)
    current = _state(tmp_path, "current", owner=dead, port=25432, postmaster_pid=alive)
    stopped: list = []
    monkeypatch.setattr(support.postgres, "stop", lambda state: stopped.append(state))

    assert support.stop_abandoned_postgres(tmp_path, 25432, current) == [orphan]
    assert stopped == [orphan] and not orphan.exists()
    assert len(list(tmp_path.glob("customllm-test-*"))) == 4
