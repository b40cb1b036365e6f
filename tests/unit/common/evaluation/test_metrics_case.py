"""Abstention, safety (PII regexes, toxicity availability) and score_case as a whole."""

import math

import pytest

from services.common.evaluation import metrics
from services.common.evaluation.metrics import (
    METRIC_KEYS,
    abstention_correct,
    false_abstention,
    metric_keys,
    pii_findings,
    pii_leak,
    score_case,
    toxicity_score,
)
from services.common.evaluation.models import CaseUsage

pytestmark = pytest.mark.unit

TEMPLATE = "I don't know based on the provided documents."


def assert_no_nan(scores):
    for key, value in scores.items():
        assert value is None or (isinstance(value, float) and math.isfinite(value)), key


# ------------------------------------------------------------------------------- abstention

def test_abstention_correct_on_refuse_cases(make_result):
    refuse = dict(expected="refuse")
    assert abstention_correct(make_result(**refuse, abstained=True)) == 1.0
    assert abstention_correct(make_result(**refuse, status="refused")) == 1.0
    assert abstention_correct(make_result(**refuse, answer=TEMPLATE), TEMPLATE) == 1.0
    assert abstention_correct(make_result(**refuse, answer="It is in Paris.")) == 0.0
    assert abstention_correct(make_result(**refuse, status="error", error="timeout")) is None
    assert abstention_correct(make_result(answer="Paris", abstained=True)) is None


def test_false_abstention_on_answer_cases(make_result):
    assert false_abstention(make_result(answer="Paris")) == 0.0
    assert false_abstention(make_result(answer=TEMPLATE), TEMPLATE) == 1.0
    assert false_abstention(make_result(abstained=True)) == 1.0
    assert false_abstention(make_result(expected="refuse", abstained=True)) is None
    assert false_abstention(make_result(status="error")) is None


# ------------------------------------------------------------------------------------- PII

@pytest.mark.parametrize(("text", "kind", "value"), [
    ("write to ana.lopez@example.co.uk today", "EMAIL_ADDRESS", "ana.lopez@example.co.uk"),
    ("call +44 20 7946 0958.", "PHONE_NUMBER", "+44 20 7946 0958"),
    ("call +1-202-555-0143", "PHONE_NUMBER", "+1-202-555-0143"),
    ("call (555) 123-4567", "PHONE_NUMBER", "(555) 123-4567"),
    ("call 555.123.4567", "PHONE_NUMBER", "555.123.4567"),
    ("appelez le 06 12 34 56 78", "PHONE_NUMBER", "06 12 34 56 78"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
    ("IBAN GB82WEST12345698765432", "IBAN_CODE", "GB82WEST12345698765432"),
    ("card 4111 1111 1111 1111", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004", "CREDIT_CARD", "5500-0000-0000-0004"),
    ("SSN 123-45-6789", "US_SSN", "123-45-6789"),
    ("host 192.168.0.1.", "IP_ADDRESS", "192.168.0.1"),
])
def test_pii_recognizers(text, kind, value):
    assert pii_findings(text) == [(kind, value)]


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",          # fails the Luhn check
    "IBAN DE89 3704 0044 0532 0130 01",  # fails mod 97
    "SSN 000-12-3456",                   # area 000 is never issued
    "version 1.2.3 and 300.1.1.1",       # not an IPv4 address
    "on 2024-01-15 at 10:30, 1,000,000 units, pi 3.14159",
    "order 12345 shipped",
    "",
])
def test_pii_negatives(text):
    assert pii_findings(text) == []


def test_pii_findings_keep_order_and_do_not_double_count():
    text = "Mail bob@example.org, card 4111111111111111, ip 10.0.0.1"
    assert [k for k, _ in pii_findings(text)] == ["EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS"]


def test_pii_leak_is_pii_absent_from_context_and_question():
    context = ["Support: +44 20 7946 0958 or help@example.com"]
    assert pii_leak("Call 020 7946 0958 [1].", context) == 0.0       # national form of it
    assert pii_leak("Write to HELP@example.com.", context) == 0.0     # case-insensitive
    assert pii_leak("Call 020 7946 0959.", context) == 1.0            # a different number
    assert pii_leak("Write to ceo@example.com.", context) == 1.0
    assert pii_leak("My mail is me@example.com?", [], "I am me@example.com") == 0.0
    assert pii_leak("No PII here.", []) == 0.0
    assert pii_leak("", []) == 0.0


# -------------------------------------------------------------------------------- toxicity

def test_toxicity_is_none_when_unavailable(monkeypatch):
    monkeypatch.setattr(metrics, "_profanity_model", lambda: None)
    assert toxicity_score("anything") is None
    assert not metrics.toxicity_available()


def test_toxicity_uses_profanity_check_when_present(monkeypatch):
    monkeypatch.setattr(metrics, "_profanity_model", lambda: lambda texts: [0.25] * len(texts))
    assert toxicity_score("some text") == 0.25
    assert toxicity_score("") == 0.0


# ------------------------------------------------------------------------------ score_case

def test_score_case_keys():
    assert METRIC_KEYS == (
        "exact_match", "f1", "rouge_l", "hit@1", "hit@5", "hit@10", "recall@5", "recall@10",
        "mrr", "ndcg@10", "citation_precision", "citation_recall", "abstention_correct",
        "false_abstention", "faithfulness", "pii_leak", "toxicity", "error",
        "latency_total_ms", "prompt_tokens", "completion_tokens", "cost_usd")
    assert metric_keys((3, 1)) == (
        "exact_match", "f1", "rouge_l", "hit@1", "hit@3", "recall@3", "mrr", "ndcg@3",
        *METRIC_KEYS[10:])


def test_score_case_answered(make_result, fake_embed, monkeypatch):
    monkeypatch.setattr(metrics, "_profanity_model", lambda: None)
    r = make_result(
        answers=["Paris"], gold_doc_ids=["d1"], answer="It is in Paris [1].",
        retrieved_doc_ids=["d2", "d1", "d3"], cited_doc_ids=["d1"],
        contexts=["The Eiffel Tower is in Paris."],
        latency_ms={"retrieve": 12.0, "generate": 80.0, "total": 95.5},
        usage=CaseUsage(prompt_tokens=300, completion_tokens=12, cost_usd=0.0004))
    s = score_case(r, fake_embed, TEMPLATE)
    assert list(s) == list(METRIC_KEYS)
    assert s["exact_match"] == 0.0
    # [it, is, in, paris] vs [paris]: P = 1/4, R = 1, F1 = 2*.25/1.25 = 0.4
    assert s["f1"] == pytest.approx(0.4)
    assert s["rouge_l"] == pytest.approx(0.4)   # LCS 1: 2*1/(4+1)
    assert (s["hit@1"], s["hit@5"], s["hit@10"]) == (0.0, 1.0, 1.0)
    assert (s["recall@5"], s["recall@10"], s["mrr"]) == (1.0, 1.0, 0.5)
    assert s["ndcg@10"] == pytest.approx(1 / math.log2(3))   # gold at rank 2, IDCG 1
    assert (s["citation_precision"], s["citation_recall"]) == (1.0, 1.0)
    assert s["abstention_correct"] is None and s["false_abstention"] == 0.0
    assert s["faithfulness"] == 1.0
    assert (s["pii_leak"], s["toxicity"], s["error"]) == (0.0, None, 0.0)
    assert (s["latency_total_ms"], s["prompt_tokens"], s["completion_tokens"]) == \
        (95.5, 300.0, 12.0)
    assert s["cost_usd"] == pytest.approx(0.0004)


def test_score_case_refusal_expected_and_given(make_result, fake_embed):
    r = make_result(expected="refuse", answer=TEMPLATE, contexts=["Unrelated text here."])
    s = score_case(r, fake_embed, TEMPLATE)
    assert s["abstention_correct"] == 1.0
    assert s["false_abstention"] is None
    assert s["f1"] is None and s["exact_match"] is None      # no accuracy on refuse cases
    assert s["faithfulness"] is None                         # an abstention claims nothing
    assert s["hit@5"] is None                                # no gold documents


def test_score_case_errored_case_only_reports_usage(make_result, fake_embed):
    r = make_result(answers=["Paris"], gold_doc_ids=["d1"], status="error", error="timeout",
                    latency_ms={"total": 30000.0})
    s = score_case(r, fake_embed, TEMPLATE)
    assert s["error"] == 1.0
    assert s["latency_total_ms"] == 30000.0
    quality = [k for k in METRIC_KEYS if k not in
               ("error", "latency_total_ms", "prompt_tokens", "completion_tokens", "cost_usd")]
    assert all(s[k] is None for k in quality)


def test_score_case_latency_falls_back_to_the_sum_of_stages(make_result):
    assert score_case(make_result(latency_ms={"a": 1.0, "b": 2.5}), None, TEMPLATE)[
        "latency_total_ms"] == 3.5
    assert score_case(make_result(), None, TEMPLATE)["latency_total_ms"] is None


@pytest.mark.parametrize("overrides", [
    {},                                                            # everything empty
    {"answer": "", "answers": ["Paris"], "gold_doc_ids": ["d1"]},  # empty answer
    {"answer": "x", "answers": ["", " "]},                         # blank references
    {"answer": "Paris.", "answers": ["Paris"], "contexts": [""]},  # blank context
    {"answer": "The the the.", "answers": ["a"], "contexts": ["an"]},
    {"expected": "refuse", "abstained": True, "answer": ""},
    {"answer": "Paris", "retrieved_doc_ids": ["d1", "d1"], "gold_doc_ids": ["d1"]},
    {"status": "error"},
])
def test_score_case_never_nan(make_result, fake_embed, overrides):
    assert_no_nan(score_case(make_result(**overrides), fake_embed, TEMPLATE))
    assert_no_nan(score_case(make_result(**overrides), None, TEMPLATE))
