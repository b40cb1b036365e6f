"""A stopping criterion against loops: stop once the generated text starts repeating itself.

A small model that does not know when to stop writes the same line again and again until
``max_new_tokens`` (256 tokens of "The answer is: 2018-01-01T00:00:00Z", 31 s). When the last
``window`` generated tokens already occurred, in that order, earlier in the generation, the
text is going round in circles: nothing new will come, so generation stops there (reported as
finish reason "length": the answer was cut, not finished).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_WINDOW = 12


def repeats(tokens: Sequence[int], window: int = DEFAULT_WINDOW) -> bool:
    """The last ``window`` tokens occur earlier in ``tokens`` (overlap allowed)."""
    if window < 1 or len(tokens) <= window:
        return False
    tail = list(tokens[-window:])
    first = tail[0]
    for start in range(len(tokens) - window):
        if tokens[start] == first and list(tokens[start:start + window]) == tail:
            return True
    return False


class RepetitionGuard:
    """transformers stopping criterion over the generated part of a batch of one."""

    def __init__(self, prompt_len: int, window: int = DEFAULT_WINDOW) -> None:
        self.prompt_len = prompt_len
        self.window = window
        self.triggered = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids[0, self.prompt_len:].tolist()
        if not self.triggered and repeats(generated, self.window):
            self.triggered = True
        return torch.full((input_ids.shape[0],), self.triggered, dtype=torch.bool)
