"""Run code in a fresh interpreter and report which heavy libraries it left in ``sys.modules``:
the check behind "this process never loads torch" (an import in the test process itself would
prove nothing, since pytest has usually imported torch already for other tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "sentence_transformers", "peft", "accelerate")
REPO_ROOT = Path(__file__).resolve().parents[2]

_EPILOGUE = f"""
import json as _json, sys as _sys
print("LEAN-CHECK " + _json.dumps(sorted(m for m in {HEAVY!r} if m in _sys.modules)))
"""


def heavy_modules_after(code: str, env: dict[str, str] | None = None,
                        timeout_s: float = 180) -> list[str]:
    """The heavy top-level packages imported once ``code`` has run in a fresh interpreter."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code + "\n" + _EPILOGUE], cwd=REPO_ROOT,
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout_s,
        check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("LEAN-CHECK ")]
    assert result.returncode == 0 and lines, (
        f"the probe failed (rc {result.returncode}):\n{result.stdout[-2000:]}\n"
        f"{result.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("LEAN-CHECK "))


def import_all(package: str, skip: tuple[str, ...] = ()) -> str:
    """Code that imports every module of ``package`` (but ``skip``)."""
    return f"""
import importlib, pkgutil
_pkg = importlib.import_module({package!r})
for _info in pkgutil.walk_packages(_pkg.__path__, {package!r} + "."):
    if _info.name not in {skip!r} and not _info.name.endswith("__main__"):
        importlib.import_module(_info.name)
"""


def offline_env(state_dir: Path, identity: str) -> dict[str, str]:
    """Enough for a worker's ``app`` module to import without a stack: a Kafka identity with a
    password file and a bootstrap address nobody listens on (clients connect lazily)."""
    password = state_dir / f"{identity}.password"
    password.write_text("not-a-real-password")
    return {"CUSTOMLLM_STATE_DIR": str(state_dir), "CUSTOMLLM_KAFKA_USERNAME": identity,
            "CUSTOMLLM_KAFKA_PASSWORD_FILE": str(password),
            "CUSTOMLLM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CUSTOMLLM_KAFKA_BOOTSTRAP": "127.0.0.1:9", "CUSTOMLLM_OTEL_EXPORTER": "none"}
