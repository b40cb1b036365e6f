"""The adapters directory also holds registry model versions (all weights): they resolve by
the same names as adapters, with their kind, label and weights version; a model folder without
the registry's marker is not served."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.common.generation.adapters import AdapterLibrary, served_version
from services.common.generation.base import UnknownAdapter

pytestmark = pytest.mark.unit


def _model(folder: Path, version: str | None = "v1", kind: str | None = "model") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(os.urandom(64))
    if version is not None:
        (folder / "customllm-adapter.json").write_text(json.dumps({"version": version,
                                                                   "kind": kind}))
    return folder


def test_a_model_version_resolves_by_name_and_by_version(tmp_path):
    _model(tmp_path / "support@v2", "v2")
    (tmp_path / "support").symlink_to("support@v2")
    library = AdapterLibrary(tmp_path)
    promoted = library.resolve("support")
    exact = library.resolve("support@v2")
    assert (promoted.kind, promoted.label) == ("model", "v2")
    assert exact.kind == "model" and exact.path == tmp_path / "support@v2"
    assert promoted.version == exact.version  # the same weights file
    assert library.available() == ["support"]


def test_adapters_and_models_share_the_library(tmp_path):
    peft = tmp_path / "cite@v1"
    peft.mkdir()
    (peft / "adapter_config.json").write_text("{}")
    (peft / "adapter_model.safetensors").write_bytes(b"x")
    (tmp_path / "cite").symlink_to("cite@v1")
    _model(tmp_path / "support@v1")
    (tmp_path / "support").symlink_to("support@v1")
    library = AdapterLibrary(tmp_path)
    assert library.available() == ["cite", "support"]
    assert library.resolve("cite").kind == "adapter"
    assert library.resolve("support").kind == "model"


def test_a_model_folder_without_the_registry_marker_is_not_served(tmp_path):
    _model(tmp_path / "handmade", version=None)
    _model(tmp_path / "wrongkind", kind="adapter")  # no peft files either
    library = AdapterLibrary(tmp_path)
    assert library.available() == []
    for name in ("handmade", "wrongkind", "../handmade"):
        with pytest.raises(UnknownAdapter):
            library.resolve(name)


def test_the_served_version_of_a_model_is_its_label(tmp_path):
    _model(tmp_path / "support@v3", "v3")
    (tmp_path / "support").symlink_to("support@v3")

    class Engine:
        adapters = AdapterLibrary(tmp_path)

    class Backend:
        engine = Engine()

    assert served_version(Backend(), "support") == "v3"
    assert served_version(Backend(), "support@v3") == "v3"
