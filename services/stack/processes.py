"""Background processes tracked by pid files in the state directory.

The local stack outlives the CLI command that started it, so whatever starts a process records
its pid; `down` and `status` read it back instead of guessing from the process table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from services.stack.exceptions import StackError


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def read_pid(run_dir: Path, name: str) -> int | None:
    """The recorded pid if that process still runs, else None (and a stale file is removed)."""
    path = pid_file(run_dir, name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        path.unlink(missing_ok=True)
        return None
    if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
        path.unlink(missing_ok=True)
        return None
    return pid


# The pid of a process whose own children should end with it (the test session sets it to its
# own pid: a run killed midway must not leave workers holding its ports and joining the next
# run's consumer groups). Children inherit the variable but do not match it, so a supervisor
# started from that process still starts long-lived workers of its own.
EXIT_WITH_ENV = "CUSTOMLLM_STACK_CHILDREN_EXIT_WITH"
SETPRIV = "/usr/bin/setpriv"  # util-linux: sets the parent-death signal, then execs argv


def _tied_to_this_process(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when this process dies, if asked for here (see
    ``EXIT_WITH_ENV``) and the system can (Linux's parent-death signal, set by ``setpriv`` and
    kept across its exec, so the recorded pid is the program's own)."""
    if os.environ.get(EXIT_WITH_ENV) != str(os.getpid()) or not Path(SETPRIV).exists():
        return list(argv)
    return [SETPRIV, "--pdeathsig", "TERM", "--", *argv]


def spawn(
    name: str,
    argv: Sequence[str],
    run_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv detached from this process group, so Ctrl-C on the CLI does not kill it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by the project, not from user input
            _tied_to_this_process(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    pid_file(run_dir, name).write_text(str(proc.pid))
    return proc.pid


def stop(run_dir: Path, name: str, timeout_s: float = 30.0) -> bool:
    """SIGTERM, wait, then SIGKILL. Returns whether something was running."""
    pid = read_pid(run_dir, name)
    if pid is None:
        return False
    terminate_pid(pid, timeout_s)
    pid_file(run_dir, name).unlink(missing_ok=True)
    return True


def terminate_pid(pid: int, timeout_s: float = 30.0) -> None:
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout_s)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_until(check: object, timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Poll ``check()`` until it is truthy; the error names what never became ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(interval_s)
    raise StackError(f"{what} was not ready after {timeout_s:.0f}s")
