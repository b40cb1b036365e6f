"""Helpers for the guardrails tests: workers started with a test policy folder (or another
generation backend) in place of the session's, and reading one request's records off a topic."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.guardrails.policy import PACKAGED_POLICIES
from services.stack import services as worker_procs
from tests.support.stack import LocalStack, Workers


def policy_folder(folder: Path, **domains: str) -> Path:
    """The packaged default policy plus one ``<domain>.yaml`` per keyword (its YAML text)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PACKAGED_POLICIES / "default.yaml", folder / "default.yaml")
    for name, text in domains.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


@contextmanager
def swapped_workers(stack: LocalStack, names: tuple[str, ...], env: dict[str, str],
                    restore_env: dict[str, str] | None = None) -> Iterator[Workers]:
    """Run ``names`` with ``env``. Whatever runs under those names now (one consumer group per
    service, e.g. the session's query workers) is stopped first and, when ``restore_env`` is
    given, started again with it afterwards, so later tests find the stack as they left it."""
    was_running = [n for n in names
                   if worker_procs.processes.read_pid(worker_procs.run_dir(stack.state), n)]
    for name in was_running:
        worker_procs.stop(stack.state, name)
    running = Workers(stack, env, names=names)
    try:
        running.start_all()
        yield running
    finally:
        running.stop_all()
        if restore_env is not None and was_running:
            Workers(stack, restore_env, names=tuple(was_running)).start_all()


def records_for(stack: LocalStack, topic: str, request_id: str, expected: int = 1,
                timeout_s: float = 30) -> list[dict[str, Any]]:
    """The JSON values on ``topic`` keyed by ``request_id`` (read from the beginning)."""
    key = request_id.encode()
    found = stack.read_topic(topic, lambda k, _v: k == key, expected, timeout_s)
    return [json.loads(value) for _key, value in found]
