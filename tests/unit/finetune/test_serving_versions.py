"""Serving by registry version: ``name`` is the promoted version, ``name@vN`` that version,
and the promoted link is swapped atomically (pure filesystem, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.adapter_registry import RegistryError
from services.common.generation.adapters import AdapterLibrary, served_version
from services.common.generation.base import UnknownAdapter
from services.finetune.registry import MARKER, link_promoted

pytestmark = pytest.mark.unit


def _version(root: Path, name: str, n: int, weights: bytes = b"w") -> Path:
    folder = root / f"{name}@v{n}"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(weights * n)
    (folder / MARKER).write_text(json.dumps({"name": name, "version": f"v{n}"}))
    return folder


class _Engine:
    def __init__(self, root: Path) -> None:
        self.adapters = AdapterLibrary(root)


class _Backend:
    def __init__(self, root: Path) -> None:
        self.engine = _Engine(root)


def test_versions_are_addressable_and_the_name_follows_promotion(tmp_path):
    library = AdapterLibrary(tmp_path)
    v1, v2 = _version(tmp_path, "fmt", 1), _version(tmp_path, "fmt", 2)
    assert library.available() == []  # versions alone are not served under a name
    assert library.resolve("fmt@v2").label == "v2"
    assert library.resolve("fmt@2").path == v2
    with pytest.raises(UnknownAdapter):
        library.resolve("fmt")

    link_promoted(tmp_path, "fmt", v1)
    assert library.available() == ["fmt"]
    first = library.resolve("fmt")
    assert first.label == "v1"
    link_promoted(tmp_path, "fmt", v2)
    second = library.resolve("fmt")
    assert second.label == "v2" and second.version != first.version  # the engine reloads
    assert (tmp_path / "fmt").is_symlink() and not (tmp_path / "fmt").readlink().is_absolute()
    assert served_version(_Backend(tmp_path), "fmt") == "v2"
    assert served_version(_Backend(tmp_path), "fmt@v1") == "v1"
    assert served_version(_Backend(tmp_path), None) is None
    assert served_version(_Backend(tmp_path), "missing") is None
    assert served_version(object(), "fmt") is None  # remote backends do not say


def test_a_hand_placed_folder_is_never_replaced(tmp_path):
    hand = tmp_path / "fmt"
    hand.mkdir()
    (hand / "adapter_config.json").write_text("{}")
    (hand / "adapter_model.safetensors").write_bytes(b"w")
    with pytest.raises(RegistryError, match="placed by hand"):
        link_promoted(tmp_path, "fmt", _version(tmp_path, "fmt", 1))
    assert AdapterLibrary(tmp_path).resolve("fmt").label is None


def test_openai_model_names_address_a_version():
    from fastapi import HTTPException

    from services.gateway.model_names import split_model

    base = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert split_model("SmolLM2-135M-Instruct:fmt", base) == "fmt"
    assert split_model("customllm:fmt@v3", base) == "fmt@v3"
    with pytest.raises(HTTPException):
        split_model("customllm:fmt@latest", base)
