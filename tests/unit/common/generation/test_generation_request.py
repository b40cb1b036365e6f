"""Requests are validated before any backend sees them; errors say what is wrong."""

import pytest

from services.common.generation.adapters import AdapterLibrary
from services.common.generation.base import (
    GenerationError,
    GenerationRequest,
    InvalidGenerationRequest,
    UnknownAdapter,
)
from services.common.generation.tgi_backend import sampling, stop_sequences

pytestmark = pytest.mark.unit

USER = [{"role": "user", "content": "Hi"}]


def test_defaults_are_greedy_and_a_stop_list_becomes_a_tuple():
    request = GenerationRequest(messages=USER, stop=["a", "b"])  # type: ignore[arg-type]
    assert request.temperature == 0.0 and request.max_tokens == 256
    assert request.stop == ("a", "b")


@pytest.mark.parametrize(("changes", "message"), [
    ({"messages": []}, "messages must not be empty"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
    ({"messages": [{"role": "user"}]}, "no text content"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"temperature": None}, "temperature"),
    ({"adapter": "  "}, "adapter"),
    ({"stop": ("a", "b", "c", "d", "e")}, "at most 4"),
    ({"stop": ("",)}, "non-empty"),
])
def test_invalid_requests_are_refused(changes, message):
    arguments = {"messages": USER, **changes}
    with pytest.raises(InvalidGenerationRequest, match=message):
        GenerationRequest(**arguments)


def test_invalid_request_and_unknown_adapter_are_generation_errors():
    assert issubclass(InvalidGenerationRequest, GenerationError)
    error = UnknownAdapter("legal", ["finance", "medical"], "adapters dir /x")
    assert isinstance(error, GenerationError)
    assert str(error) == ("unknown adapter 'legal'; available adapters: finance, medical "
                          "(adapters dir /x)")
    assert "available adapters: none" in str(UnknownAdapter("x", []))
    assert "not reported" in str(UnknownAdapter("x", None))


def test_tgi_stop_sequences_add_end_of_turn_within_the_limit():
    assert stop_sequences(GenerationRequest(messages=USER)) == ["<|im_end|>"]
    assert stop_sequences(GenerationRequest(messages=USER, stop=("x", "<|im_end|>"))) == \
        ["x", "<|im_end|>"]
    full = GenerationRequest(messages=USER, stop=("a", "b", "c", "d"))
    assert stop_sequences(full) == ["a", "b", "c", "d"]


def test_tgi_sampling_sends_no_temperature_when_greedy():
    assert sampling(GenerationRequest(messages=USER)) == {"do_sample": False}
    assert sampling(GenerationRequest(messages=USER, temperature=0.7)) == \
        {"do_sample": True, "temperature": 0.7}


def test_adapter_library_lists_only_adapter_folders_and_refuses_escapes(tmp_path):
    library = AdapterLibrary(tmp_path / "adapters")
    assert library.available() == []
    for name in ("legal", "medical"):
        folder = tmp_path / "adapters" / name
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(b"x")
    (tmp_path / "adapters" / "notes").mkdir()  # no adapter_config.json: not an adapter
    (tmp_path / "adapters" / "half").mkdir()
    (tmp_path / "adapters" / "half" / "adapter_config.json").write_text("{}")
    assert library.available() == ["half", "legal", "medical"]
    assert library.resolve("legal").path == tmp_path / "adapters" / "legal"
    with pytest.raises(UnknownAdapter, match="no adapter weights"):
        library.resolve("half")
    with pytest.raises(UnknownAdapter, match="available adapters: half, legal, medical"):
        library.resolve("finance")
    with pytest.raises(UnknownAdapter):
        library.resolve("../adapters/legal")
