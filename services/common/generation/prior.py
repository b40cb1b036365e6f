"""The answer's first token, weighed against what the model would write without the question.

A small model's first-token choice is mostly its prior: the sentence starts and years it likes
after any "Answer:", whatever was asked. Contextual calibration (Zhao et al., 2021) divides that
out: the same prompt with the question replaced by "N/A" gives the prior, and the first token is
chosen by log p(token | question) - log p(token | N/A), i.e. by what the question adds.

Both prompts share everything up to the question, so the shared prefix is computed once: its
key/value cache is copied for the "N/A" ending (a few tokens), and generation continues from
the original (only the question and cue are left to read). The prior costs a few tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

NULL_QUESTION = "N/A"


def null_messages(messages: Sequence[dict[str, str]], question: str) -> list[dict[str, str]] | None:
    """The messages with the last occurrence of ``question`` in the last user message replaced
    by "N/A"; None when the question is not found there."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message["role"] == "user":
            content = message["content"]
            at = content.rfind(question) if question else -1
            if at < 0:
                return None
            message["content"] = content[:at] + NULL_QUESTION + content[at + len(question):]
            return out
    return None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class StartPrior:
    """A ``prepare`` hook: fills the shared prefix's cache, scores the "N/A" ending on a copy of
    it, hands the prior to ``processor`` and the filled cache to generate()."""

    def __init__(self, null_ids: Sequence[int], processor: Any) -> None:
        self.null_ids = list(null_ids)
        self.processor = processor

    def __call__(self, model: Any, ids: list[int]) -> dict[str, Any]:
        import torch
        from transformers import DynamicCache

        shared = min(common_prefix(ids, self.null_ids), len(ids) - 1, len(self.null_ids) - 1)
        if shared < 1:
            return {}
        cache = DynamicCache()
        model(input_ids=torch.tensor([ids[:shared]]), past_key_values=cache, use_cache=True)
        null_cache = copy.deepcopy(cache)
        out = model(input_ids=torch.tensor([self.null_ids[shared:]]),
                    past_key_values=null_cache, use_cache=True)
        self.processor.prior = out.logits[0, -1].float().log_softmax(-1)
        return {"past_key_values": cache}
