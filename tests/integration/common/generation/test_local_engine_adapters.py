"""LoRA adapters: attached by name at run time, selected per request, base output untouched.

Adapters are made here with peft (r=2 on q_proj/v_proj, random weights: ``init_lora_weights``
False, so they change the output) on a fresh copy of the base model, and promoted into the
engine's adapters directory while the engine runs.
"""

import asyncio
import shutil

import pytest
import torch

from services.common.generation.base import GenerationRequest, UnknownAdapter
from services.common.generation.contract import MESSAGES
from services.common.generation.engine_types import SamplingParams
from services.common.generation.local_backend import LocalBackend
from services.common.generation.openai_backend import OpenAIBackend
from services.common.generation.tgi_backend import TgiBackend

pytestmark = pytest.mark.integration

GREEDY = SamplingParams.chat(16, 0.0)


@pytest.fixture(scope="module")
def promote(engine, adapters_dir, tmp_path_factory):
    """Write a random LoRA adapter and move it into the adapters directory in one rename."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    assert engine.load_info.folder is not None, "the model cache could not be written"
    staging_root = tmp_path_factory.mktemp("adapter-staging")

    def make(name: str, seed: int) -> None:
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(engine.load_info.folder)
        config = LoraConfig(r=2, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                            init_lora_weights=False, task_type="CAUSAL_LM")
        staging = staging_root / f"{name}-{seed}"
        get_peft_model(base, config).save_pretrained(staging)
        target = adapters_dir / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)

    return make


@pytest.fixture(scope="module")
def tiny(engine, promote):
    """The base answer before any adapter existed, then the adapter "tiny"."""
    base = engine.generate_chat(MESSAGES, GREEDY)
    assert "tiny" not in engine.available_adapters()
    promote("tiny", seed=1)
    return base


def test_adapter_changes_the_output_and_leaves_the_base_unchanged(engine, tiny):
    assert "tiny" in engine.available_adapters()  # appeared without a restart
    adapted = engine.generate_chat(MESSAGES, GREEDY, adapter="tiny")
    assert adapted.text != tiny.text
    assert engine.generate_chat(MESSAGES, GREEDY).text == tiny.text
    assert engine.generate_chat(MESSAGES, GREEDY, adapter="tiny").text == adapted.text


def test_unknown_adapter_lists_the_available_ones(engine, tiny):
    with pytest.raises(UnknownAdapter, match=r"unknown adapter 'nope'; available adapters: .*tiny"):
        engine.generate_chat(MESSAGES, GREEDY, adapter="nope")


def test_a_repromoted_adapter_is_reloaded(engine, tiny, promote):
    promote("twice", seed=2)
    first = engine.generate_chat(MESSAGES, GREEDY, adapter="twice").text
    promote("twice", seed=3)  # new weights under the same name
    second = engine.generate_chat(MESSAGES, GREEDY, adapter="twice").text
    assert first != second
    assert engine.generate_chat(MESSAGES, GREEDY).text == tiny.text


def test_every_backend_serves_the_adapter_alike(engine, tiny, tgi_url, openai_url):
    request = GenerationRequest(messages=MESSAGES, max_tokens=16, adapter="tiny")
    backends = [LocalBackend(engine), TgiBackend(tgi_url, timeout_s=60),
                OpenAIBackend(openai_url, "k", "local", timeout_s=60)]

    async def run():
        out = []
        for backend in backends:
            result = await backend.generate(request)
            streamed = "".join([piece async for piece in backend.stream(request)])
            out.append((backend.name, result.text, streamed, result.adapter))
        return out

    results = asyncio.run(run())
    expected = engine.generate_chat(MESSAGES, GREEDY, adapter="tiny").text
    for name, text, streamed, adapter in results:
        assert (text, streamed, adapter) == (expected, expected, "tiny"), name
