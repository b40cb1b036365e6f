"""The evidence automaton inside ``model.generate``: a logits processor, and answer scores.

:class:`ConstrainedLogits` masks every token the automaton does not allow (so greedy decoding
picks the model's best *allowed* token) and remembers the model's own, unmasked
log-probabilities of what was chosen: how much the model believed in the answer it was made to
write. :func:`continuation_logprobs` scores another continuation (the "don't know" text) on the
prompt's key/value cache, so the two can be compared for abstention at the cost of a few
tokens, not a second prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.generation.evidence import EvidenceConstraint, State


class ConstrainedLogits:
    """Logits processor of one constrained generation (batch of one)."""

    def __init__(self, constraint: EvidenceConstraint, prompt_len: int,
                 prior: Any = None, prior_weight: float = 1.0) -> None:
        self.constraint = constraint
        self.prior, self.prior_weight = prior, prior_weight
        self.prompt_len = prompt_len
        self.state: State = constraint.initial()
        self.chosen: list[int] = []
        self.raw_logprobs: list[float] = []  # the unmasked model's log-prob of each chosen token
        self.first_step: Any = None  # unmasked log-probs of the first step (whole vocabulary)
        self.first_adjusted: Any = None  # the same less the weighted prior (prior.py), if any
        self.first_allowed: frozenset[int] = frozenset()  # what the first token could be
        self._last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids.shape[1] - self.prompt_len
        if generated > len(self.chosen):
            self._take(int(input_ids[0, -1]))
        logprobs = scores[0].float().log_softmax(-1)
        if self.first_step is None:
            self.first_step = logprobs
        self._last = logprobs
        allowed = self.constraint.allowed(self.state) or self.constraint.end_ids
        if generated == 0:
            self.first_allowed = allowed
        mask = torch.full_like(scores, float("-inf"))
        mask[:, sorted(allowed)] = 0.0
        if generated == 0 and self.prior is not None:
            self.first_adjusted = logprobs - self.prior_weight * self.prior
            return self.first_adjusted[None, :] + mask
        return scores + mask

    def finish(self, output_ids: Sequence[int]) -> None:
        """Account for the last token, which generate() chose after the last call."""
        for token in output_ids[len(self.chosen):]:
            self._take(int(token))

    def _take(self, token: int) -> None:
        if self._last is not None:
            self.raw_logprobs.append(float(self._last[token]))
        self.chosen.append(token)
        self.state = self.constraint.advance(self.state, token)


def continuation_logprobs(model: Any, cache: Any, prompt_len: int, first_step: Any,
                          tokens: Sequence[int]) -> list[float]:
    """Log-probability of each token of ``tokens`` right after the prompt, teacher-forced on
    the prompt's cache (cut back to the prompt first; the cache is spent afterwards)."""
    import torch

    if not tokens:
        return []
    scores = [float(first_step[tokens[0]])]
    if len(tokens) == 1:
        return scores
    cache.crop(prompt_len)
    ids = torch.tensor([list(tokens[:-1])], dtype=torch.long)
    with torch.inference_mode():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    logprobs = out.logits[0].float().log_softmax(-1)
    scores += [float(logprobs[k, tokens[k + 1]]) for k in range(len(tokens) - 1)]
    return scores
