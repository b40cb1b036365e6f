"""Model names on the OpenAI surface: ``<base>`` or ``<base>:<adapter>``."""

from __future__ import annotations

import re

from fastapi import HTTPException, status

from services.common.config import Settings

# ``name`` (its promoted version) or ``name@v3`` (that registry version).
_ADAPTER = re.compile(r"^[A-Za-z0-9._-]{1,128}(@v?[0-9]{1,9})?$")
ALIASES = {"customllm", "default"}


def split_model(model: str, base_model: str) -> str | None:
    """The adapter named by ``model`` (None for the base). Unknown bases are a 404."""
    base, _, adapter = model.partition(":")
    if base not in ALIASES | {base_model, base_model.split("/")[-1]}:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"model {model!r} is not served; GET /v1/models lists them")
    if not adapter:
        return None
    if not _ADAPTER.match(adapter):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid adapter name {adapter!r}")
    return adapter


def available_adapters(settings: Settings) -> list[str]:
    """Adapter folders (peft format) in the adapters directory, found on every call so a new
    adapter shows up without a restart. Registry versions (``name@v3`` folders) are not
    listed: ``name`` is their promoted one."""
    from services.common.generation.adapters import AdapterLibrary

    return AdapterLibrary(settings.adapters_path).available()
