"""Restarts the local stack's processes (Kafka, Postgres, the workers) when they exit, as
Compose's and Kubernetes' restart policies do for a deployed stack.

The workers' failure policy is to exit and be restarted (a dependency that stays down, a poison
message budget spent: see the shared processor), which only works with someone to restart
them; without this, one Postgres restart left `customllm up`'s rag worker stopped until a person
noticed. ``customllm up`` writes the plan (which processes, with which environment) and starts
this loop as a process of its own; ``customllm down`` stops it first, so nothing it stops on
purpose comes back.

Restarts back off the way Kubernetes' CrashLoopBackOff does: 2 s after the first exit, doubling
to 5 minutes, back to 2 s once a process has stayed up 10 minutes. Each restart is logged with
the last line of the process's own log (usually why it exited) and counted in
``run/restarts.json``, which ``customllm status`` shows.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.common.config import REPO_ROOT
from services.stack import kafka, postgres, processes
from services.stack import services as workers

log = logging.getLogger(__name__)
NAME = "supervisor"
KAFKA, POSTGRES = "kafka", "postgres"  # supervised like the workers
PLAN_FILE = "supervised.json"
RESTARTS_FILE = "restarts.json"
CHECK_EVERY_S = 1.0


@dataclass
class Track:
    """One supervised process: whether it was last seen running, and its backoff."""

    base_s: float = 2.0
    cap_s: float = 300.0
    reset_after_s: float = 600.0
    running_since: float | None = None
    failures: int = 0
    next_start_at: float = 0.0
    restarts: int = 0

    def seen_running(self, now: float) -> None:
        if self.running_since is None:
            self.running_since = now

    def seen_exited(self, now: float) -> None:
        """Called once per exit: schedules the next start."""
        if self.running_since is not None and now - self.running_since >= self.reset_after_s:
            self.failures = 0
        self.failures += 1
        self.running_since = None
        self.next_start_at = now + min(self.cap_s, self.base_s * 2 ** (self.failures - 1))

    @property
    def waiting(self) -> bool:
        return self.running_since is None and self.failures > 0


@dataclass(frozen=True)
class Plan:
    names: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def write_plan(state_dir: Path, plan: Plan) -> None:
    path = workers.run_dir(state_dir) / PLAN_FILE
    _write_atomic(path, {"names": list(plan.names), "env": plan.env})


def _write_atomic(path: Path, data: object) -> None:
    """Whole or not at all: the supervisor reads these files while ``up`` may write them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def read_plan(state_dir: Path) -> Plan:
    data = json.loads((workers.run_dir(state_dir) / PLAN_FILE).read_text())
    return Plan(tuple(data["names"]), dict(data.get("env", {})))


def read_restarts(state_dir: Path) -> dict[str, dict[str, object]]:
    try:
        return json.loads((workers.run_dir(state_dir) / RESTARTS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def alive(state_dir: Path, name: str) -> bool:
    if name == KAFKA:
        return kafka.pid(state_dir) is not None
    if name == POSTGRES:
        return postgres.pid(state_dir) is not None
    return processes.read_pid(workers.run_dir(state_dir), name) is not None


def start_process(state_dir: Path, name: str, env: dict[str, str]) -> int:
    """Start one planned process the way ``customllm up`` did (the broker and the database
    on the configured ports, a worker with its own identity)."""
    if name in (KAFKA, POSTGRES):
        from services.common.config import get_settings

        settings = get_settings()
        if name == KAFKA:
            return kafka.start(state_dir, settings.kafka_port, settings.kafka_controller_port,
                               settings.kafka_heap)
        return postgres.start(state_dir, settings.postgres_port)
    return workers.start(state_dir, name, env=env)


def supervise_once(state_dir: Path, plan: Plan, tracks: dict[str, Track], now: float,
                   start: Callable[[Path, str, dict[str, str]], int] = start_process
                   ) -> list[str]:
    """One look at every planned process, in plan order (the broker and the database before
    the workers that need them): note exits, start those whose backoff is over. A start that
    fails counts as another exit. Returns the names started."""
    started: list[str] = []
    for name in plan.names:
        track = tracks.setdefault(name, Track())
        if alive(state_dir, name):
            track.seen_running(now)
            continue
        if not track.waiting:
            track.seen_exited(now)
            log.warning("%s exited (%s); restart in %.0f s", name, last_log_line(state_dir, name),
                        track.next_start_at - now)
        if now < track.next_start_at:
            continue
        track.restarts += 1
        try:
            new_pid = start(state_dir, name, plan.env)
        except Exception as exc:  # noqa: BLE001 - e.g. a port taken: try again after the backoff
            track.seen_exited(now)
            log.error("%s could not start (%s); next try in %.0f s", name, exc,
                      track.next_start_at - now)
            _record_restart(state_dir, name, track, f"start failed: {exc}")
            continue
        track.seen_running(now)
        started.append(name)
        log.warning("%s restarted (pid %d, restart %d)", name, new_pid, track.restarts)
        _record_restart(state_dir, name, track, last_log_line(state_dir, name))
    return started


def last_log_line(state_dir: Path, name: str) -> str:
    """The last non-empty line of a process's log: usually the reason it exited."""
    try:
        with _log_of(state_dir, name).open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            lines = [x for x in handle.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:300] if lines else "empty log"


def _log_of(state_dir: Path, name: str) -> Path:
    if name == KAFKA:
        return kafka.KafkaPaths(state_dir).logs / "kafka" / "server.log"  # log4j's, not stdout
    if name == POSTGRES:
        return postgres.PostgresPaths(state_dir).log
    return workers.log_path(state_dir, name)


def _record_restart(state_dir: Path, name: str, track: Track, reason: str) -> None:
    path = workers.run_dir(state_dir) / RESTARTS_FILE
    records = read_restarts(state_dir)
    records[name] = {"restarts": track.restarts,
                     "last_restart": datetime.now(UTC).isoformat(timespec="seconds"),
                     "last_log_line": reason}
    _write_atomic(path, records)


def run(state_dir: Path, stopping: threading.Event | None = None) -> None:
    """Until ``stopping``; the plan is read on every look, so a later ``customllm up
    --console`` adds the console to a running supervisor."""
    stopping = stopping or threading.Event()
    (workers.run_dir(state_dir) / RESTARTS_FILE).unlink(missing_ok=True)
    tracks: dict[str, Track] = {}
    log.info("supervising %s", ", ".join(read_plan(state_dir).names))
    while not stopping.is_set():
        supervise_once(state_dir, read_plan(state_dir), tracks, time.monotonic())
        stopping.wait(CHECK_EVERY_S)


def start(state_dir: Path, plan: Plan) -> int:
    """Add ``plan`` to the plan on file and start the supervisor unless it runs."""
    running = pid(state_dir)
    if running is not None:
        before = read_plan(state_dir)
        names = tuple(dict.fromkeys([*before.names, *plan.names]))
        write_plan(state_dir, Plan(names, {**before.env, **plan.env}))
        return running
    write_plan(state_dir, plan)
    return processes.spawn(NAME, [sys.executable, "-m", "services.stack.supervisor"],
                           workers.run_dir(state_dir), workers.log_path(state_dir, NAME),
                           env={"CUSTOMLLM_STATE_DIR": str(state_dir)}, cwd=REPO_ROOT)


def pid(state_dir: Path) -> int | None:
    return processes.read_pid(workers.run_dir(state_dir), NAME)


def stop(state_dir: Path) -> bool:
    return processes.stop(workers.run_dir(state_dir), NAME)


def main() -> None:
    from services.common import logs
    from services.common.config import get_settings

    settings = get_settings()
    logs.configure(settings.log_level)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    run(settings.state_path, stopping)


if __name__ == "__main__":
    main()
