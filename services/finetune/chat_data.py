"""Chat examples → token ids and labels, with the loss on the assistant's tokens only.

The conversation is rendered with the tokenizer's own chat template, the same one serving uses
(``LocalEngine.chat_prompt``), so the adapter learns exactly the prompt it will be asked with.
Each assistant turn is located by rendering the conversation up to that turn twice, with and
without it (``add_generation_prompt=True`` before it): the text between the two is what the
model must produce, including the template's end-of-turn token so it learns to stop. Everything
else (system prompt, user turns, the ``<|im_start|>assistant`` header) is labelled -100.

Segments are tokenized one by one and concatenated, and the first segment is exactly the
serving prompt string tokenized the way the engine tokenizes it (``add_special_tokens=False``),
so training and inference see the same ids for the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.finetune.examples import ChatExample, ExampleError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def render(tokenizer: Any, messages: Sequence[dict[str, str]], *, generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ExampleError("the tokenizer has no chat template; cannot format chat examples")
    return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=generation_prompt)


def segments(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered conversation as consecutive (text, is_target) pieces."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        after = render(tokenizer, messages[:i + 1], generation_prompt=False)
        if not before.startswith(done) or not after.startswith(before):
            raise ExampleError("the chat template does not render conversations prefix-stably; "
                               "cannot locate the assistant turns")
        if len(before) > len(done):
            pieces.append((before[len(done):], False))
        pieces.append((after[len(before):], True))
        done = after
    return pieces


def tokenize_example(tokenizer: Any, example: ChatExample, max_seq_len: int) -> TokenizedExample:
    """Ids and labels, cut to ``max_seq_len`` from the right (the prompt's start is kept).

    A conversation whose target starts beyond the limit keeps no target token: the caller
    drops it (it would teach nothing and only cost time)."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, is_target in segments(tokenizer, example.messages):
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        input_ids.extend(ids)
        labels.extend(ids if is_target else [IGNORE_INDEX] * len(ids))
    truncated = len(input_ids) > max_seq_len
    return TokenizedExample(input_ids[:max_seq_len], labels[:max_seq_len], truncated)


def pad_batch(batch: Sequence[TokenizedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    import torch

    width = max(len(item.input_ids) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(item.labels, dtype=torch.long)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
