"""How the end-to-end answers benchmark reads a reply: a citation is right only when every
passage the answer cites is the question's own paragraph (real retrieval may number it
anywhere, or not retrieve it), a reply without citations is a "don't know", a refusal is not."""

from __future__ import annotations

import json

import pytest

from benchmarks.answers_path import PathCase, corpus, mode_settings, outcome
from benchmarks.answers_report import summarize
from services.common.events import Citation, RagReply, Usage

pytestmark = pytest.mark.unit

NO = "I don't know based on the provided documents."
CASE = PathCase("q1", "Who led the tribunal?", ("the ICTY",), "v11/0007")


def _reply(answer: str, cited: dict[int, str], status: str = "ok") -> RagReply:
    return RagReply(request_id="r", status=status, answer=answer,
                    citations=[Citation(n=n, chunk_id=f"{doc}#0", doc_id=doc)
                               for n, doc in cited.items()],
                    usage=Usage(prompt_tokens=100, completion_tokens=4))


def test_the_own_paragraph_cited_wherever_retrieval_numbered_it():
    got = outcome(CASE, _reply("ICTY [3]", {3: "v11/0007"}), 1.2)
    assert got.gold_n == 3 and not got.abstained and got.completion_tokens == 4
    row = summarize([got], NO)
    assert row["exact_match"] == 1.0 and row["citation_accuracy"] == 1.0


def test_another_paragraph_cited_is_a_wrong_citation_but_the_words_still_score():
    got = outcome(CASE, _reply("ICTY [1]", {1: "v11/0100"}), 1.0)
    assert got.gold_n == -1
    row = summarize([got], NO)
    assert row["exact_match"] == 1.0 and row["citation_accuracy"] == 0.0


def test_citing_the_own_paragraph_and_another_is_not_right():
    got = outcome(CASE, _reply("ICTY [1][2]", {1: "v11/0007", 2: "v11/0100"}), 1.0)
    assert got.gold_n == -1


def test_a_reply_without_citations_is_a_dont_know_and_a_refusal_is_not():
    dont_know = outcome(CASE, _reply(NO, {}), 0.4)
    refused = outcome(CASE, _reply("This request was blocked.", {}, status="refused"), 0.1)
    timed_out = outcome(CASE, None, 30.0)
    assert dont_know.abstained and not refused.abstained and not timed_out.abstained
    assert timed_out.status == "timeout" and refused.status == "refused"
    row = summarize([dont_know, refused, timed_out], NO)
    assert row["false_no_answer"] == pytest.approx(1 / 3, abs=1e-3)  # rounded to 4 places
    assert row["exact_match"] == 0.0


def test_the_corpus_names_each_paragraph_once_across_both_files(tmp_path):
    def squad(titles: list[str]) -> dict:
        return {"data": [{"title": t, "paragraphs": [{"context": f"{t} text {i}.", "qas": []}
                                                     for i in range(2)]} for t in titles]}

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(squad(["Montana", "Genocide"])))
    second.write_text(json.dumps(squad(["Normans"])))
    docs, by_text = corpus([first, second])
    assert [d.doc_id for d in docs] == ["v11/0000", "v11/0001", "v11/0002", "v11/0003",
                                        "v2/0004", "v2/0005"]
    assert by_text["Normans text 1."] == "v2/0005"
    assert {d.privacy_class for d in docs} == {"public"}


def test_a_margin_mode_sets_the_workers_margin_and_an_unknown_mode_is_refused():
    env, options, row = mode_settings("margin:1.75")
    assert env == {"CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN": "1.75"} and options == {}
    assert "1.75" in row
    assert mode_settings("base")[0] == {"CUSTOMLLM_ANSWER_ADAPTER_ENABLED": "false"}
    for unknown in ("margin:wide", "zero-shot"):
        with pytest.raises((KeyError, ValueError)):
            mode_settings(unknown)


def test_a_mode_ending_in_a_folder_serves_that_adapter_and_names_it_in_its_row():
    from pathlib import Path

    from benchmarks.answers_path import split_adapter

    assert split_adapter("margin:2@/tmp/trial") == ("margin:2", Path("/tmp/trial"))
    assert split_adapter("default") == ("default", None)
    env, options, row = mode_settings("margin:2@/tmp/trial")
    assert env == {"CUSTOMLLM_ANSWER_ADAPTER_ABSTAIN_MARGIN": "2"} and options == {}
    assert row.endswith("adapter trial") and row != mode_settings("margin:2")[2]
    with pytest.raises((KeyError, ValueError)):
        mode_settings("zero-shot@/tmp/trial")
