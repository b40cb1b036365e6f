"""Extractive or free: how one answer is generated, and the request that asks for it.

A request may say (``options.answer_mode``); otherwise the domain's template may (its
``answer_mode`` key); otherwise answers are extractive where the backend can constrain decoding
(the local engine) and free elsewhere (a remote TGI/OpenAI server cannot be constrained, so an
extractive request to one is generated freely rather than refused).
"""

from __future__ import annotations

from collections.abc import Sequence

from services.rag.context import ContextItem
from services.rag.generation.base import Extractive, GenerationBackend
from services.rag.prompts import PromptTemplate

# Room for a 10-token span, its marker and end of turn: an extractive answer stops there.
EXTRACTIVE_MAX_TOKENS = 16
# "Don't know" wins when the model's own first-step log-probability of its first token exceeds
# the best allowed span start's by more than this: the most unanswerable questions caught at
# <= 10% false "don't know" on the benchmark's calibration articles (benchmarks/answers.py,
# docs/benchmarks/answers.json: 0.60 caught, 0.10 false there), never on the reported ones.
ABSTAIN_MARGIN = 1.06


def resolve(requested: str | None, template: PromptTemplate,
            backend: GenerationBackend) -> str:
    """``"extractive"`` or ``"free"`` for this request (see the module docstring)."""
    can_constrain = bool(getattr(backend, "constrains", False))
    mode = requested or template.answer_mode or ("extractive" if can_constrain else "free")
    return "extractive" if mode == "extractive" and can_constrain else "free"


def extractive_request(items: Sequence[ContextItem], template: PromptTemplate,
                       question: str) -> Extractive:
    """What the backend needs to constrain the answer to these context items."""
    return Extractive(passages=tuple((item.n, item.text) for item in items),
                      no_answer=template.no_answer, abstain_margin=ABSTAIN_MARGIN,
                      question=question)
