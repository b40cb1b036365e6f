import pytest

from services.guardrails.checks.toxicity import check_toxicity, toxicity_score, toxicity_scores
from services.guardrails.policy import CheckPolicy

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", [
    "You are a worthless idiot and I hate you.",
    "shut the fuck up",
    "f u c k   y o u",      # spaced letters
    "you st00pid b1tch",    # leetspeak
])
def test_abuse_scores_high(text):
    assert toxicity_score(text) >= 0.8


@pytest.mark.parametrize("text", [
    "How do I kill a stuck process on Linux?",
    "What is the deadline for the quarterly report?",
    "The patient reported severe pain in the lower back.",
    "",
])
def test_ordinary_questions_score_low(text):
    assert toxicity_score(text) < 0.5


def test_batch_scores_match_single_scores():
    texts = ["hello there", "you moron"]
    assert toxicity_scores(texts) == pytest.approx([toxicity_score(t) for t in texts])


def test_check_applies_policy():
    blocked = check_toxicity("you are a fucking moron", CheckPolicy(threshold=0.8))
    assert blocked.triggered and blocked.action == "block" and "toxic" in blocked.reason
    flagged = check_toxicity("you are a fucking moron", CheckPolicy(threshold=0.8, action="flag"))
    assert flagged.action == "flag"
    assert check_toxicity("thanks for the help", CheckPolicy()).action == "allow"
    assert check_toxicity("anything", CheckPolicy(enabled=False)).action == "skip"


def test_folded_model_gives_the_library_probabilities():
    """The one-matrix form of the model is a speed-up, not a new model: the same probability
    as the library's own ``predict_prob`` on texts drawn from its whole vocabulary."""
    import random

    from profanity_check import predict_prob
    from profanity_check import profanity_check as library

    from services.guardrails.checks.toxicity import _model

    vocabulary = sorted(library.vectorizer.vocabulary_)
    rng = random.Random(7)
    texts = ["you moron", "How do I kill a stuck process on Linux?", "f*** off", ""]
    texts += [" ".join(rng.sample(vocabulary, rng.randint(1, 30))) for _ in range(300)]
    assert _model().predict_prob(texts) == pytest.approx(predict_prob(texts), abs=1e-9)
