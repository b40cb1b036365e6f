"""The factory picks the backend the settings name, without loading or connecting anything."""

import pytest

from services.common.config import Settings
from services.common.generation.base import GenerationBackend
from services.common.generation.factory import backend_from_settings
from services.common.generation.local_backend import LocalBackend
from services.common.generation.openai_backend import OpenAIBackend
from services.common.generation.tgi_backend import TgiBackend

pytestmark = pytest.mark.unit


def test_local_backend_shares_one_unloaded_engine_per_settings(tmp_path):
    settings = Settings(generation_backend="local", adapters_dir=tmp_path,
                        generation_timeout_s=7)
    backend = backend_from_settings(settings)
    assert isinstance(backend, LocalBackend) and backend.name == "local"
    assert isinstance(backend, GenerationBackend)
    assert backend.timeout_s == 7
    assert not backend.engine.loaded  # created, not loaded: warm_up does that
    assert backend.engine.adapters.root == tmp_path
    assert backend_from_settings(settings).engine is backend.engine


def test_tgi_backend_uses_the_configured_url():
    backend = backend_from_settings(Settings(generation_backend="tgi",
                                             tgi_url="http://tgi.internal:8080/"))
    assert isinstance(backend, TgiBackend) and backend.name == "tgi"
    assert backend.url == "http://tgi.internal:8080"


def test_openai_backend_uses_url_key_and_model():
    backend = backend_from_settings(Settings(
        generation_backend="openai", openai_base_url="http://vllm:8000/v1",
        openai_api_key="sk-test", openai_model="smol"))
    assert isinstance(backend, OpenAIBackend) and backend.name == "openai"
    assert backend.base_url == "http://vllm:8000/v1"
    assert backend._client.api_key == "sk-test"
    assert backend.model_for(None) == "smol" and backend.model_for("legal") == "smol:legal"


def test_unknown_backend_is_refused_by_the_settings():
    with pytest.raises(ValueError):
        Settings(generation_backend="llamacpp")
