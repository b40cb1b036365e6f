"""Literal prefilters for case-insensitive regular expressions: skip a search that cannot match.

Why: Python's ``re`` tries a pattern that starts with an alternation of words at every position
of the text, so the ~40 injection rules cost ~50 µs each on a paragraph, and the ingest
worker spent most of its CPU on them (2.4 of 2.5 CPU-s for 761 chunks). Most rules need one of
a few words ("ignore", "disregard", ...) that a text mostly lacks, and ``in`` finds a word in
a string far faster than a regex search tries every position (one Aho-Corasick pass finds all
of them at once). The same idea as RE2's prefilter, kept to what can be proved from the parse
tree.

``required_literals(pattern)`` gives sets of lower-case strings such that every match of the
pattern contains at least one string of each set (none: nothing known, the pattern always
runs). It is sound for texts that are ASCII, which is where ``may_match`` applies it: under
``re.IGNORECASE`` an ASCII letter also matches a few non-ASCII letters (the long s, the Kelvin
sign, the dotless and dotted i), so a set whose strings hold any of those is dropped, and a
non-ASCII text always runs the pattern.
"""

from __future__ import annotations

import re
from re import _constants as sre  # the parse tree's opcodes (no public API for them)
from re import _parser as sre_parse
from typing import Any

# Non-ASCII letters that re.IGNORECASE matches to an ASCII letter (or the reverse).
_ASCII_FOLDING = frozenset("\u017f\u212a\u0131\u0130")
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def required_literals(pattern: re.Pattern[str]) -> tuple[frozenset[str], ...]:
    """Sets of strings (lower case) every match holds one of each; the most selective first."""
    clauses = _sequence(sre_parse.parse(pattern.pattern, pattern.flags).data)
    kept = {frozenset(c) for c in clauses
            if all(c) and not any(_ASCII_FOLDING & set(s) for s in c)}
    return tuple(sorted(kept, key=_selectivity, reverse=True))


def literal_finder(literals: frozenset[str]) -> Any:
    """An Aho-Corasick automaton over ``literals``: one pass over a text finds every one it
    holds (12 µs on a SQuAD paragraph for the injection rules' 426 strings, against 130 µs for
    426 ``in`` tests)."""
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for literal in literals:
        automaton.add_word(literal, literal)
    if literals:
        automaton.make_automaton()
    return automaton


def literals_present(finder: Any, text: str) -> frozenset[str] | None:
    """Which of the finder's literals ``text`` holds (every occurrence, overlapping ones too);
    None for a non-ASCII text, where the prefilter does not apply."""
    if not text.isascii():
        return None
    if not len(finder):
        return frozenset()
    return frozenset(literal for _end, literal in finder.iter(text.lower()))


def may_match(required: tuple[frozenset[str], ...], present: frozenset[str] | None) -> bool:
    """False only when the text lacks every string of one of ``required``'s sets (``present``
    from ``literals_present``): the search cannot match."""
    if present is None:
        return True
    return all(not clause.isdisjoint(present) for clause in required)


def _selectivity(clause: set[str] | frozenset[str]) -> tuple[int, int]:
    """Longer shortest string, then fewer strings: likelier to be absent from a text."""
    return min(map(len, clause)), -len(clause)


def _sequence(items: list) -> list[set[str]]:
    """A concatenation: every part must match, so each part's requirement holds."""
    clauses: list[set[str]] = []
    run: list[str] = []
    for op, argument in items:
        if op is sre.LITERAL:
            char = chr(argument)
            # Kept as written when IGNORECASE folds it onto ASCII: its set is then dropped.
            run.append(char if char in _ASCII_FOLDING else char.lower())
            continue
        if run:
            clauses.append({"".join(run)})
            run = []
        clauses.extend(_node(op, argument))
    if run:
        clauses.append({"".join(run)})
    return clauses


def _node(op: object, argument: object) -> list[set[str]]:
    if op is sre.SUBPATTERN:
        return _sequence(argument[-1])  # (group, add flags, del flags, pattern)
    if op is sre.ATOMIC_GROUP:
        return _sequence(argument)
    if op is sre.BRANCH:
        alternatives = [_sequence(alternative) for alternative in argument[1]]
        if any(not alternative for alternative in alternatives):
            return []  # one way through needs nothing
        # Each way through holds its own best set: together, one string of their union.
        return [set().union(*(max(a, key=_selectivity) for a in alternatives))]
    if op in _REPEATS:
        low, _high, body = argument
        return _sequence(body) if low >= 1 else []
    # Anchors, classes, any character, lookarounds, back-references: nothing required here.
    return []
