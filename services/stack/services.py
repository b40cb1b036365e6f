"""The platform's own workers as background processes of the local stack."""

from __future__ import annotations

import sys
from pathlib import Path

from services.common.config import REPO_ROOT
from services.common.identity import own_key_path
from services.stack import processes, security

# name → module run with `python -m`; the order is the start order.
WORKERS: dict[str, str] = {
    "ingest": "services.ingest",
    "embedder": "services.embedder",
    "guardrails": "services.guardrails",
    "rag": "services.rag",
    "gateway": "services.gateway",
    "finetune": "services.finetune",
    "audit": "services.audit",  # answers' audit records and users' feedback, into Postgres
}
# Started only by `customllm up --observe`, `--model-server` and `--console`.
OBSERVER = "observe"
MODEL_SERVER = "model_server"
CONSOLE = "console"  # `customllm up --console`: the web console (no Kafka identity)
_MODULES = {**WORKERS, OBSERVER: "services.observe", MODEL_SERVER: "services.model_server",
            CONSOLE: "services.console"}


def run_dir(state_dir: Path) -> Path:
    return state_dir / "run"


def log_path(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def start(state_dir: Path, name: str, env: dict[str, str] | None = None,
          instance: str | None = None) -> int:
    """Start one worker unless it runs. ``instance`` names extra replicas (``embedder-2``)."""
    process_name = instance or name
    running = processes.read_pid(run_dir(state_dir), process_name)
    if running is not None:
        return running
    # Each worker is its own Kafka identity (the observer speaks only OTLP, it has none).
    identity = security.service_env(state_dir, name) if name in WORKERS else {}
    if name == "finetune":  # the promotion gate asks its questions with its own API key
        identity["CUSTOMLLM_API_KEY_FILE"] = str(own_key_path(state_dir, "finetune"))
    return processes.spawn(
        process_name, [sys.executable, "-m", _MODULES[name]], run_dir(state_dir),
        log_path(state_dir, process_name),
        env={"CUSTOMLLM_STATE_DIR": str(state_dir), **identity, **(env or {})}, cwd=REPO_ROOT,
    )


def stop(state_dir: Path, name: str) -> bool:
    return processes.stop(run_dir(state_dir), name)


def running(state_dir: Path) -> dict[str, int]:
    """Every recorded worker process (replicas included) that is alive."""
    found: dict[str, int] = {}
    for pid_path in sorted(run_dir(state_dir).glob("*.pid")):
        name = pid_path.stem
        if name.split("-")[0] not in _MODULES:
            continue
        pid = processes.read_pid(run_dir(state_dir), name)
        if pid is not None:
            found[name] = pid
    return found
