"""The evidence automaton as a logits processor: greedy decoding can only pick allowed tokens,
and the model's own (unmasked) log-probabilities of the chosen tokens are kept."""

from __future__ import annotations

import pytest
import torch

from services.common.generation.constrained import ConstrainedLogits
from services.common.generation.evidence import EvidenceConstraint, Passage, cited

pytestmark = pytest.mark.unit

VOCAB, END, OPEN, CLOSE = 100, 0, 90, 91


def make_constraint() -> EvidenceConstraint:
    passage = Passage(n=1, tokens=(10, 11, 12), starts=frozenset({0, 1, 2}),
                      ends=frozenset({1, 2, 3}), marker=(OPEN, 81, CLOSE))
    return EvidenceConstraint(passages=(passage,), no_answer=(70, 71), end_ids=frozenset({END}),
                              forbidden=frozenset({OPEN}))


def greedy(processor: ConstrainedLogits, prompt: list[int], favourite: int,
           steps: int) -> list[int]:
    """Decode with logits that always prefer ``favourite`` (a token the constraint refuses)."""
    ids = list(prompt)
    for _ in range(steps):
        scores = torch.zeros(1, VOCAB)
        scores[0, favourite] = 10.0
        scores[0, 11] = 1.0  # the model's second choice
        out = processor(torch.tensor([ids]), scores)
        ids.append(int(out[0].argmax()))
        if ids[-1] == END:
            break
    processor.finish(ids[len(prompt):])
    return ids[len(prompt):]


def test_only_allowed_tokens_survive_the_mask():
    processor = ConstrainedLogits(make_constraint(), prompt_len=2)
    out = processor(torch.tensor([[5, 6]]), torch.zeros(1, VOCAB))
    finite = set(torch.nonzero(torch.isfinite(out[0])).flatten().tolist())
    assert finite == {10, 11, 12, 70}


def test_greedy_decoding_writes_a_span_then_its_marker_then_ends():
    processor = ConstrainedLogits(make_constraint(), prompt_len=2)
    generated = greedy(processor, [5, 6], favourite=42, steps=10)
    assert generated[0] == 11 and generated[-4:] == [OPEN, 81, CLOSE, END]
    assert cited(processor.state) == [0]
    assert len(processor.raw_logprobs) == len(generated)
    # the unmasked model gave token 11 less than the refused favourite
    assert processor.raw_logprobs[0] < float(torch.zeros(VOCAB).log_softmax(-1)[0])


def test_a_prior_reweights_only_the_first_step():
    prior = torch.zeros(VOCAB)
    prior[11] = 5.0  # token 11 is likely whatever the question: discount it
    processor = ConstrainedLogits(make_constraint(), prompt_len=1, prior=prior)
    generated = greedy(processor, [5], favourite=42, steps=10)
    assert generated[0] != 11
