"""Grounding with hand-written answers; the lexical path needs no model, one case embeds with
the packaged MiniLM to show a paraphrase is accepted."""

import pytest

from services.guardrails.checks.grounding import check_grounding, memo_embed
from services.guardrails.policy import GroundingPolicy

pytestmark = pytest.mark.unit

CONTEXT = ["The Zorblax reactor is cooled by liquid helium pumped through ceramic channels. "
           "It was designed by Dr. Imra Velt in 2031.",
           "Salaries at Quillon Corp are paid on the twenty-fifth of each month."]
NO_ANSWER = "I don't know based on the provided documents."
POLICY = GroundingPolicy(similarity=0.6, lexical_overlap=0.5, min_supported=0.8,
                         action="replace")


def test_a_supported_answer_passes_lexically():
    answer = ("The Zorblax reactor is cooled by liquid helium [1]. "
              "Dr. Imra Velt designed it in 2031 [1].")
    result = check_grounding(answer, CONTEXT, POLICY, embed=None, no_answer=NO_ANSWER)
    assert (result.triggered, result.action, result.score) == (False, "allow", 1.0)


def test_an_invented_sentence_triggers_the_policy_action():
    answer = ("The Zorblax reactor is cooled by liquid helium [1]. "
              "Its core runs on molten bismuth harvested from lunar mines.")
    result = check_grounding(answer, CONTEXT, POLICY, embed=None, no_answer=NO_ANSWER)
    assert result.triggered and result.action == "replace" and result.score == 0.5
    assert result.details["unsupported"] == [
        "Its core runs on molten bismuth harvested from lunar mines."]


def test_a_wrong_number_is_not_supported():
    answer = "The Zorblax reactor was designed by Dr. Imra Velt in 2045."
    result = check_grounding(answer, CONTEXT, POLICY, embed=None)
    assert result.triggered and result.score == 0.0


def test_abstentions_and_empty_answers_are_not_checked():
    for answer in (NO_ANSWER, "", "I don't know."):
        result = check_grounding(answer, CONTEXT, POLICY, embed=None, no_answer=NO_ANSWER)
        assert (result.action, result.triggered) == ("skip", False)


def test_no_cited_context_means_unsupported():
    result = check_grounding("The reactor is cooled by liquid helium.", [], POLICY, embed=None)
    assert result.triggered and "cites no context" in result.reason


def test_flag_policy_keeps_the_decision_visible():
    flag = POLICY.model_copy(update={"action": "flag"})
    result = check_grounding("Bananas are the main export of Mars colonies today.", CONTEXT,
                             flag, embed=None)
    assert result.triggered and result.action == "flag"


def test_judge_verdict_replaces_the_heuristic_and_a_broken_judge_falls_back():
    judged = POLICY.model_copy(update={"judge": True})
    answer = "The Zorblax reactor is cooled by liquid helium [1]."
    result = check_grounding(answer, CONTEXT, judged, embed=None,
                             judge=lambda _p: '{"verdicts": [{"claim": 1, "supported": "no"}]}')
    assert result.triggered and result.details["method"] == "judge" and result.score == 0.0

    def broken(_prompt: str) -> str:
        raise TimeoutError("backend down")

    result = check_grounding(answer, CONTEXT, judged, embed=None, judge=broken)
    assert not result.triggered and "judge unavailable" in result.details["method"]


def test_paraphrase_is_supported_by_embedding_similarity():
    from services.common.config import get_settings
    from services.common.embeddings import embedder_from_settings

    embedder = embedder_from_settings(get_settings())
    answer = "Pay day for Quillon employees falls on the twenty-fifth of every month."
    lexical_only = check_grounding(answer, CONTEXT, POLICY, embed=None)
    with_embeddings = check_grounding(answer, CONTEXT, POLICY, embed=embedder.encode)
    assert lexical_only.triggered  # few shared words: 0.375 < 0.5
    assert not with_embeddings.triggered, with_embeddings.details


def test_memo_embed_embeds_each_text_once():
    calls: list[list[str]] = []

    def embed(texts):
        import numpy as np

        calls.append(list(texts))
        return np.ones((len(texts), 3))

    cached = memo_embed(embed)
    cached(["a", "b"])
    cached(["b", "c", "a"])
    assert calls == [["a", "b"], ["c"]]
