"""The short prompt of the answer adapter: only the sentences about the question, numbered.

Extractive decoding can copy only from the sentences :mod:`evidence_focus` selects, so the rest
of the passages is cost without use: on two CPU cores a 3-passage prompt (~700 tokens) takes
about a second of prefill before the first token, and training on it is five times slower than
on the selected sentences. The answer adapter (:mod:`services.common.generation.default_adapter`)
is trained on exactly the messages :func:`compact_messages` builds, and serving builds them the
same way, so training and serving see the same ids.

Each kept passage keeps its citation number, so a citation still names the retrieved chunk. The
passage text stays data: delimiters are escaped as in the full prompt, and the constraint lets
the model write only a span of it or the "don't know" text, so an instruction hidden in a
passage cannot change what the answer can be.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.generation.evidence_focus import focus, sentences
from services.common.prompting.prompts import neutralize

# Bump it when SYSTEM or the layout below changes: adapter versions whose card names another
# are not served (answer_adapter.prompt_version), since their weights learnt the old prompt.
PROMPT_VERSION = "compact-v1"
FOCUS_SENTENCES = 3  # sentences kept over all passages (the constraint copies only from them)
SYSTEM = ("Copy the answer from the sentences, then its number: Thomas Edison [2]\n"
          "If they do not contain it, reply: {no_answer}")


def compact_passages(question: str, passages: Sequence[tuple[int, str]],
                     keep: int = FOCUS_SENTENCES) -> tuple[tuple[int, str], ...]:
    """``(n, text)`` of the passages that hold one of the ``keep`` sentences about the
    question, each reduced to those sentences (in their order); at most ``keep`` sentences in
    all, also when no sentence shares a word with the question (then the first ones)."""
    texts = [text for _, text in passages]
    chosen = focus(question, texts, keep).ranges
    picked = sum(len(r) for r in chosen)
    if picked > keep:  # focus found no question word: it returned every sentence
        budget, trimmed = keep, []
        for text in texts:
            ranges = tuple(sentences(text)[:budget])
            budget -= len(ranges)
            trimmed.append(ranges)
        chosen = tuple(trimmed)
    out = []
    for (n, text), ranges in zip(passages, chosen, strict=True):
        if ranges:
            out.append((n, " ".join(text[a:b].strip() for a, b in ranges)))
    return tuple(out)


def compact_messages(question: str, passages: Sequence[tuple[int, str]],
                     no_answer: str) -> list[dict[str, str]]:
    """System + user messages over already compacted ``passages``."""
    lines = [f"[{n}] {neutralize(' '.join(text.split()))}" for n, text in passages]
    user = "\n".join(lines) + f"\nQuestion: {neutralize(question.strip())}\nAnswer:"
    return [{"role": "system", "content": SYSTEM.format(no_answer=no_answer)},
            {"role": "user", "content": user}]
