"""The real SmolLM2 tokenizer, from the converted-model cache when it is there (fast), else from
the packaged GGUF (the same tokenizer, slower to read)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from services.common import model_store
    from services.common.config import get_settings

    settings = get_settings()
    folder = model_store.cache_folder(settings.model_cache_dir, settings.local_model_id)
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    gguf = settings.local_model_gguf or model_store.default_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
