"""Extractive or free: how one answer is generated, and the request that asks for it.

A request may say (``options.answer_mode``); otherwise the domain's template may (its
``answer_mode`` key); otherwise answers are extractive where the backend can constrain decoding
(the local engine) and free elsewhere (a remote TGI/OpenAI server cannot be constrained, so an
extractive request to one is generated freely rather than refused).
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.generation.base import Extractive, GenerationBackend
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import PromptTemplate

# Room for a 10-token span, its marker and end of turn: an extractive answer stops there.
EXTRACTIVE_MAX_TOKENS = 16
# "Don't know" by margin (the model's first-step log-probability of the no-answer text above the
# best allowed span start) is off unless a template sets ``abstain_margin``. Calibrated on the
# benchmark's calibration articles it caught 0.60 of unanswerable questions at 0.10 false there,
# but 0.20 at 0.125 false on held-out articles, and on this project's own end-to-end corpus it
# refused 3 of 4 answerable questions: not reliable enough to be the default.
ABSTAIN_MARGIN: float | None = None


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
                      no_answer=template.no_answer,
                      abstain_margin=template.abstain_margin if template.abstain_margin is not None
                      else ABSTAIN_MARGIN,
                      question=question, date_precision=template.date_precision)
