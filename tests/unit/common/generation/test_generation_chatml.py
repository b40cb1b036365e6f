"""ChatML rendering for raw-prompt servers (TGI's /generate)."""

import pytest

from services.common.generation.chatml import SMOLLM2_DEFAULT_SYSTEM, render_chatml

pytestmark = pytest.mark.unit


def test_renders_each_message_and_the_generation_prompt():
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye?"}]
    assert render_chatml(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nBye?<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_adds_smollm2s_default_system_turn_only_when_there_is_none():
    prompt = render_chatml([{"role": "user", "content": "Hi"}])
    assert prompt.startswith(f"<|im_start|>system\n{SMOLLM2_DEFAULT_SYSTEM}<|im_end|>\n")
    assert prompt.count("<|im_start|>system") == 1


def test_default_system_can_be_switched_off_and_generation_prompt_left_out():
    prompt = render_chatml([{"role": "user", "content": "Hi"}], add_generation_prompt=False,
                           default_system=None)
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n"
