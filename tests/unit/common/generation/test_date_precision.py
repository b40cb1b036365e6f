"""A bare year asked for as a date is widened to the date its passage writes, and only then."""

from __future__ import annotations

import pytest

from services.common.generation.date_precision import (
    asks_for_date,
    widen_cited_year,
    widen_year,
)

pytestmark = pytest.mark.unit

RELEASE = "Twilight Princess was released in North America in November 2006 for the Wii."


@pytest.mark.parametrize(("passage", "year", "widened"), [
    (RELEASE, "2006", "November 2006"),
    ("It was released on November 19, 2006 in North America.", "2006", "November 19, 2006"),
    ("It premiered on 26 October 2015 at the Royal Albert Hall.", "2015", "26 October 2015"),
    ("Work on the sequel begins in spring 2016, the studio said.", "2016", "spring 2016"),
    ("Filming ended in late summer 2014.", "2014", "late summer 2014"),
    ("The treaty was signed on the 3rd of March 1878.", "1878", "3rd of March 1878"),
    ("The Sept. 2001 attacks changed the plans.", "2001", "Sept. 2001"),
    ("It was released in 2006 to wide acclaim.", "2006", "2006"),  # nothing to add
])
def test_when_question_gets_the_date_the_passage_writes(passage: str, year: str,
                                                       widened: str) -> None:
    assert widen_year("When was it released?", year, passage) == widened


def test_widened_answer_is_a_verbatim_span_of_its_passage() -> None:
    passage = "It opened on\nMarch 5,  2016 in Australia."
    widened = widen_year("When did it open in Australia?", "2016", passage)
    assert widened == "March 5,  2016"
    assert widened in passage


@pytest.mark.parametrize("question", [
    "In what year was it released?",
    "What year was the Wii version released?",
    "Which decade saw the first release?",
    "Who released it in 2006?",
    "What was released?",
])
def test_questions_that_do_not_ask_for_a_date_keep_the_year(question: str) -> None:
    assert widen_year(question, "2006", RELEASE) == "2006"


@pytest.mark.parametrize("span", ["November 2006", "2006 Wii", "10", "12006", "the 2006"])
def test_only_a_bare_year_is_widened(span: str) -> None:
    assert widen_year("When was it released?", span, RELEASE) == span


def test_a_year_written_two_ways_is_left_as_copied() -> None:
    passage = "A demo was shown in May 2006; the game itself shipped in December 2006."
    assert widen_year("When was it shown?", "2006", passage) == "2006"
    same = "It shipped in December 2006 in Japan and in December 2006 in Europe."
    assert widen_year("When did it ship?", "2006", same) == "December 2006"


def test_words_that_only_end_like_a_month_or_season_are_not_taken() -> None:
    assert widen_year("When was it built?", "1999", "The Mayfall 1999 report.") == "1999"
    assert widen_year("When was it built?", "1999", "The waterfall 1999 report.") == "1999"


def test_asks_for_date() -> None:
    assert asks_for_date("When did Nintendo announce it?")
    assert asks_for_date("On what date was Spectre first shown in the UK?")
    assert not asks_for_date("In what year were rights to Spectre worked out?")
    assert not asks_for_date("How long did it take to shoot Spectre?")


def test_cited_answer_reads_the_passage_it_cites() -> None:
    passages = ((1, "The demo came out in 2006."), (2, RELEASE))
    assert widen_cited_year("When was it released?", "2006 [2]", passages) \
        == "November 2006 [2]"
    assert widen_cited_year("When was it released?", "2006 [1]", passages) == "2006 [1]"
    assert widen_cited_year("When was it released?", "2006 [7]", passages) == "2006 [7]"
    assert widen_cited_year("When was it released?", "I don't know.", passages) \
        == "I don't know."


def _answer(text: str, abstained: bool = False) -> object:
    from services.common.generation.engine_types import RawCompletion
    from services.common.generation.extractive import ExtractiveAnswer

    return ExtractiveAnswer(text, abstained, RawCompletion(text, (), (), "eos_token", None, 0.1),
                            {"decision": -1.0})


def test_served_answer_is_widened_and_says_so() -> None:
    from services.common.generation.base import Extractive
    from services.common.generation.extractive import _at_date_precision

    passages = ((1, RELEASE),)
    spec = Extractive(passages, "I don't know.", question="When was it released?")
    served = _at_date_precision(_answer("2006 [1]"), spec, passages)
    assert (served.text, served.scores) == ("November 2006 [1]",
                                            {"decision": -1.0, "widened_year": 1.0})
    off = Extractive(passages, "I don't know.", question="When was it released?",
                     date_precision=False)
    assert _at_date_precision(_answer("2006 [1]"), off, passages).text == "2006 [1]"
    dont_know = _answer("I don't know.", abstained=True)
    assert _at_date_precision(dont_know, spec, passages) is dont_know
