"""Toxicity: abusive, hateful or threatening language, in questions and in answers.

The model is ``alt-profanity-check`` (a linear SVM over TF-IDF, calibrated, shipped inside the
wheel: no download, ~0.1 ms per text). It is English-only and word-based, so it is scored on
the text and on its skeleton (where "f*ck", "1d10t" and spaced-out insults are undone), and
the higher score counts. Larger transformer toxicity models (Detoxify and the like) fetch
their weights from a hub at first use, which these machines cannot do; a packaged one can be
added behind ``toxicity_score`` without changing its callers.
"""

from __future__ import annotations

import threading
from functools import cache

from services.common.text_normalize import skeleton
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import CheckPolicy

CHECK = "toxicity"
_LOCK = threading.Lock()


@cache
def _predict_prob():  # noqa: ANN202 - the library's function, typed there
    from profanity_check import predict_prob

    return predict_prob


def toxicity_scores(texts: list[str]) -> list[float]:
    """One score in [0, 1] per text (the higher of the text's and its skeleton's)."""
    if not texts:
        return []
    skeletons = [skeleton(t) for t in texts]
    with _LOCK:
        predict = _predict_prob()
        probs = predict(list(texts) + skeletons)
    n = len(texts)
    return [float(max(probs[i], probs[n + i])) if texts[i].strip() else 0.0 for i in range(n)]


def toxicity_score(text: str) -> float:
    """Probability-like score in [0, 1] that ``text`` is toxic."""
    return toxicity_scores([text])[0]


def check_toxicity(text: str, policy: CheckPolicy) -> CheckResult:
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    score = toxicity_score(text)
    triggered = score >= policy.threshold
    reason = (f"toxic language (score {score:.2f} ≥ {policy.threshold:.2f})" if triggered
              else "")
    return CheckResult(CHECK, score, triggered, policy.action if triggered else "allow", reason)
