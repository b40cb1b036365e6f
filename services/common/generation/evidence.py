"""Answers constrained to the evidence: which token may come next, as a small automaton.

An extractive answer is a span copied from one retrieved passage, then that passage's citation
marker (`` [n]``), then end of turn; or, instead, the template's exact "don't know" text, then
end of turn. Following several copies at once is what a trie of every suffix of every passage
would do; here the trie is implicit: a *thread* is a position inside a passage (or inside one of
the fixed sequences: a marker or the "don't know" text), and a state is the set of live threads.
The allowed tokens are those some thread can take next, and a token keeps only the threads that
predicted it. So the answer is a real substring of a passage and the marker names a passage
that contains it: extractive, and cited exactly, by construction.

Everything here works on token ids, so it is tested with hand-written sequences; turning text
into ids and word boundaries lives in :mod:`services.common.generation.evidence_tokens`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """One citable passage: its tokens, where a span may start and end, and its marker."""

    n: int  # the citation number the prompt gave it
    tokens: tuple[int, ...]
    starts: frozenset[int]  # indices a span may start at (word starts)
    ends: frozenset[int]  # exclusive end indices a span may stop at (word ends)
    marker: tuple[int, ...]  # the tokens of " [n]"
    blocked: frozenset[int] = frozenset()  # indices no span may contain
    breaks: frozenset[int] = frozenset()  # sentence starts: a span may start there, not cross


@dataclass(frozen=True)
class Span:
    """A thread inside passage ``p``: the span so far is ``tokens[start:i]``."""

    p: int
    start: int
    i: int


@dataclass(frozen=True)
class Fixed:
    """A thread inside a fixed sequence (``kind`` "marker" of passage ``p``, or "no_answer");
    ``j`` tokens of it are already written (``len + 1`` once end of turn followed it)."""

    kind: str
    p: int
    j: int


Thread = Span | Fixed


@dataclass(frozen=True)
class State:
    """The live threads after some prefix; ``started`` is False only before the first token."""

    threads: frozenset[Thread]
    started: bool = True


@dataclass(frozen=True)
class EvidenceConstraint:
    """The automaton of one answer. ``aliases`` maps a token the model may write at the very
    start (``"Norm"``) to the passage token it stands for (``" Norm"``): at the start of a turn
    the model writes words without their leading space. ``forbidden`` tokens never continue a
    span (the marker's opening ``" ["``, so a span cannot swallow a marker). ``max_span`` caps
    the span's tokens; a span grows only while it can still end at a word end within the cap, so
    generation always finishes with a marker."""

    passages: tuple[Passage, ...]
    no_answer: tuple[int, ...]
    end_ids: frozenset[int]
    aliases: Mapping[int, int] = field(default_factory=dict)
    forbidden: frozenset[int] = frozenset()
    max_span: int = 32

    def initial(self) -> State:
        spans = {Span(p, s, s) for p, passage in enumerate(self.passages) for s in passage.starts
                 if s < len(passage.tokens) and s not in passage.blocked
                 and passage.tokens[s] not in self.forbidden}
        fixed: set[Thread] = {Fixed("no_answer", -1, 0)} if self.no_answer else set()
        return State(frozenset(spans | fixed), started=False)

    def allowed(self, state: State) -> frozenset[int]:
        """Tokens that keep at least one thread alive."""
        tokens: set[int] = set()
        for thread in state.threads:
            tokens.update(self._next_tokens(thread))
        if not state.started:
            tokens.update(alias for alias, real in self.aliases.items() if real in tokens)
        return frozenset(tokens)

    def advance(self, state: State, token: int) -> State:
        """The threads that predicted ``token``, moved past it (empty when none did)."""
        if not state.started and token in self.aliases:
            real = self.aliases[token]
            moved = self._advance(state, real) | self._advance(state, token)
        else:
            moved = self._advance(state, token)
        return State(frozenset(moved))

    def finished(self, state: State) -> bool:
        """Only end of turn is left (or nothing is: the automaton was left)."""
        return not self.allowed(state) - self.end_ids

    # -- per thread --------------------------------------------------------------------------

    def _next_tokens(self, thread: Thread) -> set[int]:
        if isinstance(thread, Fixed):
            sequence = self._sequence(thread)
            if thread.j < len(sequence):
                return {sequence[thread.j]}
            return set(self.end_ids) if thread.j == len(sequence) else set()
        passage = self.passages[thread.p]
        tokens: set[int] = set()
        if self._may_extend(thread, passage):
            tokens.add(passage.tokens[thread.i])
        if self._may_end(thread, passage) and passage.marker:
            tokens.add(passage.marker[0])
        return tokens

    def _advance(self, state: State, token: int) -> set[Thread]:
        moved: set[Thread] = set()
        for thread in state.threads:
            if isinstance(thread, Fixed):
                sequence = self._sequence(thread)
                if (thread.j < len(sequence) and sequence[thread.j] == token) or \
                        (thread.j == len(sequence) and token in self.end_ids):
                    moved.add(Fixed(thread.kind, thread.p, thread.j + 1))  # past the end: done
                continue
            passage = self.passages[thread.p]
            if self._may_extend(thread, passage) and passage.tokens[thread.i] == token:
                moved.add(Span(thread.p, thread.start, thread.i + 1))
            if self._may_end(thread, passage) and passage.marker[:1] == (token,):
                moved.add(Fixed("marker", thread.p, 1))
        return moved

    def _may_extend(self, thread: Span, passage: Passage) -> bool:
        """One more token, if it may be in a span and the longer span can still end at a word
        end within the cap (so generation never strands inside a word)."""
        if not self._takes(passage, thread.i, thread.start):
            return False
        for end in range(thread.i + 1, thread.start + self.max_span + 1):
            if end in passage.ends:
                return True
            if not self._takes(passage, end, thread.start):
                return False
        return False

    def _takes(self, passage: Passage, i: int, start: int) -> bool:
        """Token ``i`` may be part of a span that starts at ``start``."""
        return (i < len(passage.tokens) and i not in passage.blocked
                and (i == start or i not in passage.breaks)
                and passage.tokens[i] not in self.forbidden)

    def _may_end(self, thread: Span, passage: Passage) -> bool:
        return thread.i > thread.start and thread.i in passage.ends

    def _sequence(self, thread: Fixed) -> tuple[int, ...]:
        return self.no_answer if thread.kind == "no_answer" else self.passages[thread.p].marker


def span_of(state: State) -> Span | None:
    """A span thread of the state (the answer's passage while the span is being written)."""
    spans = sorted((t for t in state.threads if isinstance(t, Span)),
                   key=lambda t: (t.p, t.start))
    return spans[0] if spans else None


def cited(state: State) -> list[int]:
    """Passage indices whose marker is being (or was) written."""
    return sorted({t.p for t in state.threads if isinstance(t, Fixed) and t.kind == "marker"})


def walk(constraint: EvidenceConstraint, tokens: Sequence[int]) -> State:
    """The state after ``tokens`` (for tests and for replaying a finished answer)."""
    state = constraint.initial()
    for token in tokens:
        state = constraint.advance(state, token)
    return state
