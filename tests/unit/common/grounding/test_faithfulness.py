"""Claims, claim support (embedding OR lexical overlap, numbers checked), faithfulness, and the
LLM judge hook with a fake `ask`."""

import json

import pytest

from services.common.grounding.faithfulness import (
    claim_support,
    faithfulness,
    judge_faithfulness,
    parse_judge_reply,
    split_claims,
)

pytestmark = pytest.mark.unit

TEMPLATE = "I don't know based on the provided documents."
CONTEXTS = ["The Eiffel Tower is in Paris. It was completed in 1889.",
            "Gustave Eiffel's company designed and built the tower."]


def test_split_claims_drops_markers_and_short_fragments():
    answer = "Paris [1]. Yes. The tower is in Paris [2, 3].\n- It was completed in 1889 [1]."
    assert split_claims(answer) == ["The tower is in Paris.", "It was completed in 1889."]
    assert split_claims("") == []
    assert split_claims(None) == []
    assert split_claims("OK. Sure!") == []


def test_claim_support_by_embedding(fake_embed):
    # bag-of-words cosine with "It was completed in 1889.": tokens identical -> 1.0
    supported, score = claim_support("It was completed in 1889.", CONTEXTS, fake_embed)
    assert supported and score == pytest.approx(1.0)


def test_claim_support_by_lexical_overlap_without_embedder():
    # content tokens {eiffel, tower, located, paris}; 3 of 4 in sentence 1 -> overlap 0.75
    supported, score = claim_support("The Eiffel Tower is located in Paris.", CONTEXTS, None)
    assert supported and score == pytest.approx(0.75)
    # {tower, painted, green}: best sentence holds only "tower" -> 1/3 < 0.5
    supported, score = claim_support("The tower is painted green.", CONTEXTS, None)
    assert not supported and score == pytest.approx(1 / 3)


def test_claim_support_thresholds_are_parameters(fake_embed):
    claim = "The tower is painted green."
    assert not claim_support(claim, CONTEXTS, fake_embed).supported
    assert claim_support(claim, CONTEXTS, fake_embed, sim_threshold=0.1).supported


def test_a_wrong_number_is_unsupported_even_when_similar(fake_embed):
    # cosine of [it, was, completed, in, 1899] with [it, was, completed, in, 1889] = 4/5 = 0.8
    supported, score = claim_support("It was completed in 1899.", CONTEXTS, fake_embed)
    assert not supported and score == pytest.approx(0.8)
    assert claim_support("It was completed in 1899.", CONTEXTS, fake_embed,
                         check_numbers=False).supported


def test_claim_support_without_context(fake_embed):
    assert claim_support("The tower is in Paris.", [], fake_embed) == (False, 0.0)


def test_faithfulness_hand_computed(fake_embed):
    # claims: in Paris (supported), completed in 1889 (supported), painted bright green
    # (content {painted, bright, green}: overlap 0, cosine 1/5 at most) -> 2/3
    answer = ("The Eiffel Tower is in Paris [1]. It was completed in 1889 [1]. "
              "It is painted bright green.")
    assert faithfulness(answer, CONTEXTS, fake_embed) == pytest.approx(2 / 3)
    assert faithfulness(answer, CONTEXTS, None) == pytest.approx(2 / 3)


def test_faithfulness_undefined_cases(fake_embed):
    assert faithfulness("", CONTEXTS, fake_embed) is None
    assert faithfulness("   ", CONTEXTS, fake_embed) is None
    assert faithfulness(TEMPLATE, CONTEXTS, fake_embed, no_answer_text=TEMPLATE) is None
    assert faithfulness("I don't know.", CONTEXTS, fake_embed) is None
    assert faithfulness("The tower is in Paris.", [], fake_embed) is None
    assert faithfulness("The tower is in Paris.", ["", "  "], fake_embed) is None
    assert faithfulness("Yes.", CONTEXTS, fake_embed) is None       # no claim


def test_faithfulness_calls_embed_once(fake_embed):
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return fake_embed(texts)

    faithfulness("The tower is in Paris. It was built by Eiffel's company.", CONTEXTS, counting)
    assert calls == [2 + 3]          # 2 claims + 3 context sentences, one batch


def test_faithfulness_rejects_a_broken_embedder():
    with pytest.raises(ValueError, match="shape"):
        faithfulness("The tower is in Paris.", CONTEXTS, lambda texts: [[1.0, 0.0]])


# ------------------------------------------------------------------------------- LLM judge

ANSWER = "The Eiffel Tower is in Paris. It is painted bright green."


def scripted(*replies):
    calls = []

    def ask(prompt):
        calls.append(prompt)
        reply = replies[min(len(calls) - 1, len(replies) - 1)]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return ask, calls


def test_judge_retries_after_garbage_then_parses_json():
    valid = json.dumps({"verdicts": [{"claim": 1, "supported": "yes"},
                                     {"claim": 2, "supported": "no"}]})
    ask, calls = scripted("I think it's mostly fine!", valid)
    assert judge_faithfulness(ANSWER, CONTEXTS, ask) == 0.5
    assert len(calls) == 2
    assert "could not be parsed" in calls[1] and "could not be parsed" not in calls[0]
    assert "1. The Eiffel Tower is in Paris." in calls[0] and CONTEXTS[1] in calls[0]


def test_judge_gives_none_after_all_attempts_fail():
    ask, calls = scripted("garbage", "{not json", "```json\n{}\n```")
    assert judge_faithfulness(ANSWER, CONTEXTS, ask, retries=2) is None
    assert len(calls) == 3


def test_judge_survives_exceptions_from_ask():
    ask, calls = scripted(TimeoutError("judge down"), '{"verdicts": ["yes", "yes"]}')
    assert judge_faithfulness(ANSWER, CONTEXTS, ask) == 1.0
    ask, calls = scripted(RuntimeError("down"))
    assert judge_faithfulness(ANSWER, CONTEXTS, ask, retries=1) is None
    assert len(calls) == 2


def test_judge_not_called_when_undefined():
    ask, calls = scripted('{"verdicts": ["yes"]}')
    assert judge_faithfulness("", CONTEXTS, ask) is None
    assert judge_faithfulness(TEMPLATE, CONTEXTS, ask, no_answer_text=TEMPLATE) is None
    assert judge_faithfulness(ANSWER, [], ask) is None
    assert calls == []


@pytest.mark.parametrize(("reply", "verdicts"), [
    ('{"verdicts": [{"claim": 1, "supported": "yes"}, {"claim": 2, "supported": "no"}]}',
     [True, False]),
    ('Sure! ```json\n{"verdicts": [{"claim": 2, "supported": false}, '
     '{"claim": 1, "supported": true}]}\n``` Hope it helps.', [True, False]),   # any order
    ('{"verdicts": ["Yes", "No."]}', [True, False]),
    ('{"results": [{"verdict": "supported"}, {"verdict": "unsupported"}]}', [True, False]),
    ('{"1": "yes", "2": "partially"}', [True, False]),      # partially = not supported
    ('[1, 0]', [True, False]),
    ("1. yes\n2. no", [True, False]),
    ('{"verdicts": ["yes"]}', None),                        # wrong count
    ('{"verdicts": ["yes", "maybe"]}', None),                # unknown word
    ("", None),
    (None, None),
])
def test_parse_judge_reply(reply, verdicts):
    assert parse_judge_reply(reply, 2) == verdicts


def test_parse_judge_reply_single_claim_words():
    assert parse_judge_reply("Yes, the context says so.", 1) == [True]
    assert parse_judge_reply("no", 1) == [False]
    assert parse_judge_reply('{"supported": "yes"}', 1) == [True]
    assert parse_judge_reply("Perhaps.", 1) is None


def test_number_words_are_compared_as_digits():
    ctx = ["Remote work is allowed two days per week. Up to five days carry over."]
    # lexical overlap {remote, work, permitted, three, days, week} -> 4/6, but 3 is not 2
    assert not claim_support("Remote work is permitted three days a week.", ctx, None).supported
    assert claim_support("Remote work is allowed 2 days per week.", ctx, None).supported
    assert claim_support("Up to 5 days carry over.", ctx, None).supported
    # "one" is not treated as a number (it is as often a pronoun)
    assert claim_support("Remote work is allowed for this one week.", ctx, None).supported
