"""The evidence automaton on hand-written token ids: only real spans, then their own marker."""

from __future__ import annotations

import pytest

from services.common.generation.evidence import (
    EvidenceConstraint,
    Fixed,
    Passage,
    cited,
    span_of,
    walk,
)

pytestmark = pytest.mark.unit

END = 0
OPEN, CLOSE = 90, 91  # " [" and "]"
ONE, TWO = 81, 82  # digits
NO_ANSWER = (70, 71, 72)  # "I don't know"


def passage(n: int, tokens: tuple[int, ...], *, starts: set[int] | None = None,
            ends: set[int] | None = None, blocked: set[int] | None = None) -> Passage:
    every = set(range(len(tokens)))
    return Passage(n=n, tokens=tokens,
                   starts=frozenset(every if starts is None else starts),
                   ends=frozenset(set(range(1, len(tokens) + 1)) if ends is None else ends),
                   marker=(OPEN, 80 + n, CLOSE), blocked=frozenset(blocked or ()))


def constraint(*passages: Passage, max_span: int = 8,
               aliases: dict[int, int] | None = None) -> EvidenceConstraint:
    return EvidenceConstraint(passages=passages, no_answer=NO_ANSWER,
                              end_ids=frozenset({END}), aliases=aliases or {},
                              forbidden=frozenset({OPEN}), max_span=max_span)


def test_first_token_is_any_start_or_the_no_answer_text():
    c = constraint(passage(1, (10, 11, 12)), passage(2, (20, 11, 21), starts={0, 2}))
    assert c.allowed(c.initial()) == {10, 11, 12, 20, 21, 70}


def test_a_span_continues_only_as_the_passage_does_and_may_end_with_its_marker():
    c = constraint(passage(1, (10, 11, 12)))
    state = walk(c, [10])
    assert c.allowed(state) == {11, OPEN}
    state = walk(c, [10, 11, OPEN])
    assert c.allowed(state) == {ONE}
    state = walk(c, [10, 11, OPEN, ONE, CLOSE])
    assert c.allowed(state) == {END}
    assert c.finished(state)
    assert cited(walk(c, [10, 11, OPEN, ONE, CLOSE, END])) == [0]


def test_a_token_off_the_passage_leaves_the_automaton():
    c = constraint(passage(1, (10, 11, 12)))
    assert walk(c, [10, 12]).threads == frozenset()


def test_a_span_shared_by_two_passages_may_cite_either_but_nothing_else():
    c = constraint(passage(1, (10, 11, 12)), passage(2, (30, 11, 12, 31)))
    state = walk(c, [11, 12])
    assert c.allowed(state) == {31, OPEN}
    assert c.allowed(walk(c, [11, 12, OPEN])) == {ONE, TWO}
    # once it goes on as only passage 2 does, only passage 2 can be cited
    assert c.allowed(walk(c, [11, 12, 31, OPEN])) == {TWO}


def test_word_boundaries_decide_where_a_span_starts_and_ends():
    # tokens 10 11 form one word ("Norm" "ans"): no start at 11, no end after 10
    c = constraint(passage(1, (10, 11, 12), starts={0, 2}, ends={2, 3}))
    assert 11 not in c.allowed(c.initial())
    assert c.allowed(walk(c, [10])) == {11}
    assert c.allowed(walk(c, [10, 11])) == {12, OPEN}


def test_blocked_tokens_cut_spans():
    c = constraint(passage(1, (10, 11, 12, 13), blocked={2}))
    assert 12 not in c.allowed(c.initial())
    assert c.allowed(walk(c, [10, 11])) == {OPEN}


def test_the_span_is_capped_at_a_word_end():
    c = constraint(passage(1, (10, 11, 12, 13, 14), ends={1, 3, 5}), max_span=3)
    assert c.allowed(walk(c, [10])) == {11, OPEN}
    assert c.allowed(walk(c, [10, 11])) == {12}
    assert c.allowed(walk(c, [10, 11, 12])) == {OPEN}  # the cap: no fourth token
    # starting at 11, the third token (13) would end inside a word, so it is refused
    assert c.allowed(walk(c, [11, 12])) == {OPEN}


def test_the_marker_opener_never_continues_a_span():
    c = constraint(passage(1, (10, OPEN, ONE, CLOSE, 12)))
    assert c.allowed(walk(c, [10])) == {OPEN}
    assert cited(walk(c, [10, OPEN])) == [0]
    assert OPEN not in c.allowed(c.initial())
    assert c.allowed(walk(c, [10, OPEN])) == {ONE}


def test_no_answer_is_written_exactly_then_ends():
    c = constraint(passage(1, (10, 11)))
    state = walk(c, [70, 71])
    assert c.allowed(state) == {72}
    state = walk(c, [70, 71, 72])
    assert c.allowed(state) == {END}
    done = walk(c, [70, 71, 72, END])
    assert any(isinstance(t, Fixed) and t.kind == "no_answer" for t in done.threads)
    assert c.allowed(done) == frozenset()


def test_a_start_alias_stands_for_the_space_led_token_only_at_the_start():
    c = constraint(passage(1, (10, 11, 10)), aliases={50: 10})
    assert 50 in c.allowed(c.initial())
    state = walk(c, [50])
    assert span_of(state) is not None
    assert c.allowed(state) == {11, OPEN}
    assert 50 not in c.allowed(walk(c, [10, 11]))


def test_the_span_of_a_state_names_its_passage_and_start():
    c = constraint(passage(1, (10, 11)), passage(2, (12, 13, 14)))
    span = span_of(walk(c, [13]))
    assert (span.p, span.start, span.i) == (1, 1, 2)


def test_a_span_may_start_at_a_sentence_start_but_not_run_across_one():
    c = constraint(passage(1, (10, 11, 12, 13), blocked=set()))
    broken = EvidenceConstraint(
        passages=(Passage(n=1, tokens=(10, 11, 12, 13), starts=frozenset({0, 1, 2, 3}),
                          ends=frozenset({1, 2, 3, 4}), marker=(OPEN, ONE, CLOSE),
                          breaks=frozenset({2})),),
        no_answer=NO_ANSWER, end_ids=frozenset({END}), forbidden=frozenset({OPEN}))
    assert c.allowed(walk(c, [10, 11])) == {12, OPEN}
    assert broken.allowed(walk(broken, [10, 11])) == {OPEN}
    assert broken.allowed(walk(broken, [12])) == {13, OPEN}


def test_a_span_never_grows_where_it_could_not_end_within_the_cap():
    # 11 12 13 is one long word (no end inside it): from 10, with a cap of 3, it cannot fit
    c = constraint(passage(1, (10, 11, 12, 13, 14), ends={1, 4, 5}), max_span=3)
    assert c.allowed(walk(c, [10])) == {OPEN}
    # starting at 11 it fits exactly
    assert c.allowed(walk(c, [11])) == {12}
    assert c.allowed(walk(c, [11, 12])) == {13}
    assert c.allowed(walk(c, [11, 12, 13])) == {OPEN}
