"""The gateway process's local engine: one model shared by every route that needs it.

The engine is created lazily from the settings (creating it loads nothing) and is the same
object the rag worker's ``local`` backend uses when both run in one process
(:func:`services.common.generation.local_engine.shared_engine`). An app built with explicit
settings calls :func:`configure`; tests install their own engine with :func:`set_engine`.
"""

from __future__ import annotations

import logging
import threading

from services.common.config import Settings, get_settings
from services.common.generation.base import GenerationError
from services.common.generation.local_engine import LocalEngine, shared_engine
from services.common.logs import log

logger = logging.getLogger(__name__)

_engine: LocalEngine | None = None
_lock = threading.Lock()


def get_engine() -> LocalEngine:
    """The process's engine (a FastAPI dependency); from the global settings unless set."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = shared_engine(get_settings())
        return _engine


def configure(settings: Settings) -> LocalEngine:
    """Use the engine for ``settings`` (an app created with its own settings calls this)."""
    engine = shared_engine(settings)
    set_engine(engine)
    return engine


def set_engine(engine: LocalEngine | None) -> None:
    """Install an engine (None: back to the lazy default)."""
    global _engine
    with _lock:
        _engine = engine


def load_in_background(engine: LocalEngine) -> threading.Thread | None:
    """Start loading without blocking startup, so the server listens at once and ``/health``
    says 503 until the model is ready (as TGI's does). None when already loaded."""
    if engine.loaded:
        return None

    def load() -> None:
        try:
            engine.load()
        except GenerationError as exc:  # kept on the engine; /health reports it
            log(logger, logging.ERROR, "local model failed to load", error=str(exc)[:500])

    thread = threading.Thread(target=load, name="customllm-model-load", daemon=True)
    thread.start()
    return thread
