"""Picks the generation backend named by ``settings.generation_backend``.

Backends are imported on demand, so a worker configured for ``openai`` never imports torch and
one configured for ``local`` never needs the OpenAI client.
"""

from __future__ import annotations

from services.common.config import Settings
from services.common.generation.base import GenerationBackend


def backend_from_settings(settings: Settings) -> GenerationBackend:
    """The configured backend, not yet warmed up (call ``warm_up`` before serving)."""
    kind = settings.generation_backend
    if kind == "local":
        from services.common.generation import answer_adapter
        from services.common.generation.local_backend import LocalBackend
        from services.common.generation.local_engine import shared_engine

        adapter = answer_adapter.from_settings()
        install = (lambda: answer_adapter.install_from_settings(settings)) if adapter else None
        return LocalBackend(shared_engine(settings), timeout_s=settings.generation_timeout_s,
                            answer_adapter=adapter, install=install)
    if kind == "tgi":
        from services.common.generation.tgi_backend import TgiBackend

        key = settings.tgi_api_key.get_secret_value() if settings.tgi_api_key else None
        if settings.tgi_api_key_file is not None:
            key = settings.tgi_api_key_file.read_text().strip()
        return TgiBackend(settings.tgi_url, timeout_s=settings.generation_timeout_s,
                          api_key=key)
    if kind == "openai":
        from services.common.generation.openai_backend import OpenAIBackend

        return OpenAIBackend(settings.openai_base_url,
                             settings.openai_api_key.get_secret_value(), settings.openai_model,
                             timeout_s=settings.generation_timeout_s)
    raise ValueError(f"unknown generation backend {kind!r}; expected local, tgi or openai")
