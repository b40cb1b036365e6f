"""Label masking with the real SmolLM2 tokenizer: the loss sees the assistant's tokens only."""

from __future__ import annotations

import pytest

from services.finetune.chat_data import IGNORE_INDEX, pad_batch, segments, tokenize_example
from services.finetune.examples import ChatExample

pytestmark = pytest.mark.unit

SINGLE = ChatExample(messages=[
    {"role": "system", "content": "Answer from the context."},
    {"role": "user", "content": "Who won Super Bowl 50?"},
    {"role": "assistant", "content": "Denver Broncos [2]."},
])
MULTI = ChatExample(messages=[
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris [1]."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome [3]."},
])


def _target_text(tokenizer, item):
    return tokenizer.decode([i for i, label in zip(item.input_ids, item.labels, strict=True)
                             if label != IGNORE_INDEX])


def test_only_the_answer_and_its_end_of_turn_are_labelled(smol_tokenizer):
    item = tokenize_example(smol_tokenizer, SINGLE, max_seq_len=512)
    assert _target_text(smol_tokenizer, item) == "Denver Broncos [2].<|im_end|>\n"
    labelled = [i for i, label in enumerate(item.labels) if label != IGNORE_INDEX]
    assert labelled == list(range(labelled[0], len(item.labels)))  # one span, at the end
    assert all(item.labels[i] == item.input_ids[i] for i in labelled)


def test_the_prompt_is_tokenized_exactly_as_serving_does(smol_tokenizer):
    item = tokenize_example(smol_tokenizer, SINGLE, max_seq_len=512)
    prompt = smol_tokenizer.apply_chat_template(SINGLE.prompt, tokenize=False,
                                                add_generation_prompt=True)
    served = smol_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert item.input_ids[:len(served)] == served
    assert all(label == IGNORE_INDEX for label in item.labels[:len(served)])
    full = smol_tokenizer.apply_chat_template(SINGLE.messages, tokenize=False)
    assert smol_tokenizer.decode(item.input_ids) == full


def test_every_assistant_turn_is_labelled_and_no_user_turn(smol_tokenizer):
    item = tokenize_example(smol_tokenizer, MULTI, max_seq_len=512)
    text = _target_text(smol_tokenizer, item)
    assert text == "Paris [1].<|im_end|>\nRome [3].<|im_end|>\n"
    kinds = [is_target for _, is_target in segments(smol_tokenizer, MULTI.messages)]
    assert kinds == [False, True, False, True]


def test_truncation_keeps_the_start_and_reports_it(smol_tokenizer):
    full = tokenize_example(smol_tokenizer, SINGLE, max_seq_len=512)
    cut = tokenize_example(smol_tokenizer, SINGLE, max_seq_len=len(full.input_ids) - 3)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:len(cut.input_ids)]
    assert 0 < cut.n_target_tokens < full.n_target_tokens
    none_left = tokenize_example(smol_tokenizer, SINGLE, max_seq_len=10)
    assert none_left.n_target_tokens == 0


def test_padding_is_masked_from_attention_and_loss(smol_tokenizer):
    a = tokenize_example(smol_tokenizer, SINGLE, 512)
    b = tokenize_example(smol_tokenizer, MULTI, 512)
    batch = pad_batch([a, b], pad_id=0)
    width = max(len(a.input_ids), len(b.input_ids))
    assert batch["input_ids"].shape == (2, width)
    short = 0 if len(a.input_ids) < len(b.input_ids) else 1
    n = len((a, b)[short].input_ids)
    assert batch["attention_mask"][short, n:].sum() == 0
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][short, :n].all()
