"""Processes the test session starts end with it: a run killed midway (a CI timeout, a developer's
Ctrl-C twice) must not leave workers holding its ports and joining the next run's consumer
groups, as happened once (a second run's gateway could not bind, and stale rag workers answered
its requests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from services.stack import processes

pytestmark = pytest.mark.integration

STARTER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from services.stack import processes
    if sys.argv[2] == "tied":
        os.environ[processes.EXIT_WITH_ENV] = str(os.getpid())
    run = Path(sys.argv[1])
    print(processes.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                          run, run / "sleeper.log"), flush=True)
    time.sleep(120)
""")


def _start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    env = {k: v for k, v in os.environ.items() if k != processes.EXIT_WITH_ENV}
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path), mode],  # noqa: S603
                               stdout=subprocess.PIPE, text=True, env=env,
                               cwd=Path(__file__).resolve().parents[3])
    assert starter.stdout is not None
    return starter, int(starter.stdout.readline())


def _gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path(processes.SETPRIV).exists(), reason="needs util-linux setpriv")
def test_a_child_of_the_session_ends_when_the_session_is_killed(tmp_path):
    starter, child = _start(tmp_path, "tied")
    # setpriv execs the program in place (the pid is the program's), a moment after the spawn
    deadline = time.monotonic() + 10
    while psutil.Process(child).cmdline()[1:3] != ["-c", "import time; time.sleep(120)"]:
        assert time.monotonic() < deadline, psutil.Process(child).cmdline()
        time.sleep(0.05)
    assert processes.read_pid(tmp_path, "sleeper") == child  # the recorded pid is the program's
    starter.send_signal(signal.SIGKILL)
    starter.wait(10)
    assert _gone(child)


def test_without_the_setting_a_child_outlives_its_starter(tmp_path):
    # the local stack's own behaviour: `customllm up` returns and its processes keep running
    starter, child = _start(tmp_path, "free")
    try:
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        assert not _gone(child, timeout_s=1.5)
    finally:
        processes.terminate_pid(child, 5)
