"""The gateway never loads torch, neither at import nor while it serves (issue #12): it is an
HTTP edge in front of Kafka; the model runs in the rag worker or the model server. Checked in a
fresh interpreter, since this test process may have torch already."""

from __future__ import annotations

from pathlib import Path

from tests.support.lean import heavy_modules_after, import_all, offline_env


def test_every_gateway_module_imports_without_torch(tmp_path: Path) -> None:
    env = offline_env(tmp_path, "gateway")
    assert heavy_modules_after(import_all("services.gateway"), env) == []


def test_the_gateway_serves_without_torch(tmp_path: Path) -> None:
    """The app built as the process builds it, then real routes: health, and the model list
    with an API key (which looks up the adapters on disk)."""
    code = """
from fastapi.testclient import TestClient
from services.common import identity
from services.common.config import get_settings
from services.common.events import Principal
from services.gateway.app import create_app

settings = get_settings()
key = identity.add_key(identity.key_file_path(settings), "lean", Principal(id="lean"))
client = TestClient(create_app(settings))  # no lifespan: no Kafka needed
assert client.get("/healthz").status_code == 503
models = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
assert models.status_code == 200, models.text
"""
    assert heavy_modules_after(code, offline_env(tmp_path, "gateway")) == []
