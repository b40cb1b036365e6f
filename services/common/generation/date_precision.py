"""A date answer at the precision its passage gives.

The answer adapter learnt SQuAD's short spans, and on "when" questions it often copies only the
year of a date its passage writes in full: "2006" where the sentence says "in November 2006".
The year alone is a true but coarser answer than the evidence holds, and the reader who asked
*when* gets less than the passage says. So a bare-year span is widened to the month, day or
season written right before it in the cited passage, when the question asks for a date and not
for a year. Widening only reads the passage backwards from the year, so the answer stays a
verbatim span of its passage and its citation stays exact.

Through the real path (README, "Answers"), the adapter's bare-year answers to "when" questions
on the calibration articles were partial in 4 of 7 cases ("2006" for "November 2006"). Widened,
the answers moved little by SQuAD's gold (calibration F1 0.4197 -> 0.4206; held out one answer
better, one worse), as annotators wrote the year alone as often as the full date; it stays for
the reader, who asked *when*. A question that names the year ("In what year...") keeps it bare.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November"
          r"|December|Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)")
_SEASON = r"(?:(?:early|mid|late)[- ])?(?:[Ss]pring|[Ss]ummer|[Aa]utumn|[Ff]all|[Ww]inter)"
# What may stand right before the year: "November", "November 19,", "19 November",
# "spring", "late summer"; anchored at the year (the text before it, read backwards).
_BEFORE_YEAR = re.compile(
    rf"(?<![\w-])(?:(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?)?{_MONTH}(?:\s+\d{{1,2}}"
    rf"(?:st|nd|rd|th)?)?,?|{_SEASON}(?:\s+of)?)\s+$")
_YEAR = re.compile(r"[12]\d{3}")
_ASKS_DATE = re.compile(r"\bwhen\b|\bwhat (?:date|day)\b|\bwhich (?:date|day)\b", re.IGNORECASE)
_ASKS_COARSER = re.compile(r"\b(?:years?|decades?|century|centuries|era|age)\b", re.IGNORECASE)
_CITED = re.compile(r"(?P<span>.+?) \[(?P<n>\d+)\]")
_LOOKBACK = 40  # characters: the longest prefix is "late September 30th," and its spaces


def asks_for_date(question: str) -> bool:
    """A "when" or "what date" question that does not itself ask for a year or coarser."""
    return bool(_ASKS_DATE.search(question)) and not _ASKS_COARSER.search(question)


def widen_year(question: str, span: str, passage: str) -> str:
    """``span`` with the date words the passage writes before it, when ``span`` is a bare year
    asked for as a date and every place the passage writes that year reads the same way
    (otherwise which one was copied is unknown, and the span is kept as it is)."""
    year = span.strip()
    if not _YEAR.fullmatch(year) or not asks_for_date(question):
        return span
    widened = set()
    for found in re.finditer(rf"(?<![\w.]){year}(?![\w])", passage):
        before = _BEFORE_YEAR.search(passage, max(0, found.start() - _LOOKBACK), found.start())
        widened.add(passage[before.start() if before else found.start():found.end()])
    if len(widened) != 1:
        return span
    return widened.pop()


def widen_cited_year(question: str, answer: str, passages: Sequence[tuple[int, str]]) -> str:
    """The same on an extractive answer ("span [n]"), reading the passage it cites."""
    written = _CITED.fullmatch(answer.strip())
    if written is None:
        return answer
    texts = dict(passages)
    passage = texts.get(int(written.group("n")))
    if passage is None:
        return answer
    span = widen_year(question, written.group("span"), passage)
    return answer if span == written.group("span") else f"{span} [{written.group('n')}]"
