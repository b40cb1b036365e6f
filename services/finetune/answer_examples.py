"""A domain's chat examples in the answer adapter's own form, for a job that continues it.

The shipped answers adapter learnt the compact prompt (the sentences about the question,
numbered) and targets the constrained decoder can write (a span of a passage, its marker, or
the "don't know" text). A job started from it (``init_adapter``) on examples in the full
prompt's layout would teach those weights a prompt they are never served with, and the gate
measured the result far below the adapter it started from. So such a job reads each example as
what it is, a question over numbered passages with a cited answer, and re-encodes it exactly
as the adapter's own training data is encoded (:func:`answer_data.encode_example`); the new
version is then served like the adapter it came from.

An example is usable when its user turn holds the default template's layout (``<context>``,
``[n] title (uri)`` headers, ``Question: ...``) and its answer is the "don't know" text or a
span of one passage with that passage's marker (``thirty days [2].``). Paraphrased answers
cannot be written under the constraint and are skipped and counted, never taught.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from services.finetune.answer_data import Question, encode_example
from services.finetune.chat_data import TokenizedExample
from services.finetune.examples import ChatExample

_CONTEXT = re.compile(r"<context>\s*\n(?P<body>.*?)\n\s*</context>", re.DOTALL)
_QUESTION = re.compile(r"Question:\s*(?P<q>.+?)\s*$", re.DOTALL)
_HEADER = re.compile(r"^\[(?P<n>\d+)\][^\n]*$", re.MULTILINE)
_CITED = re.compile(r"^(?P<answer>.+?)\s*\[(?P<n>\d+)\]\s*\.?\s*$", re.DOTALL)


def as_question(example: ChatExample, no_answer: str, qid: str = "") -> Question | None:
    """The example's question, passages and cited answer; None when it is not in the layout or
    its answer cites anything but exactly one of its passages."""
    turns = example.messages
    if len(turns) < 2 or turns[-1].get("role") != "assistant" or \
            turns[-2].get("role") != "user":
        return None
    user, answer = turns[-2].get("content", ""), turns[-1].get("content", "").strip()
    context, question = _CONTEXT.search(user), _QUESTION.search(user.split("</context>")[-1])
    if context is None or question is None:
        return None
    passages = _passages(context["body"])
    if not passages:
        return None
    if answer.rstrip(".") == no_answer.rstrip("."):
        return Question(qid, "", question["q"], (), passages, None, "unanswerable")
    cited = _CITED.match(answer)
    if cited is None or "[" in cited["answer"]:
        return None
    n = int(cited["n"])
    if n not in {m for m, _ in passages}:
        return None
    return Question(qid, "", question["q"], (cited["answer"].strip(),), passages, n,
                    "answerable")


def _passages(body: str) -> tuple[tuple[int, str], ...]:
    headers = list(_HEADER.finditer(body))
    out = []
    for at, header in enumerate(headers):
        end = headers[at + 1].start() if at + 1 < len(headers) else len(body)
        text = body[header.end():end].strip()
        if text:
            out.append((int(header["n"]), text))
    return tuple(out)


def encode(examples: Sequence[ChatExample], tokenizer: Any, end_ids: frozenset[int],
           no_answer: str, focus_sentences: int) -> tuple[list[TokenizedExample], dict[str, int]]:
    """The usable examples as the adapter's training ids, and what happened to each."""
    counts = {"answerable": 0, "unanswerable": 0, "not_in_layout": 0, "not_writable": 0}
    encoded: list[TokenizedExample] = []
    for number, example in enumerate(examples):
        question = as_question(example, no_answer, str(number))
        if question is None:
            counts["not_in_layout"] += 1
            continue
        item = encode_example(tokenizer, end_ids, question, no_answer, focus_sentences,
                              spaces_inside=True)
        if item is None:
            counts["not_writable"] += 1
            continue
        counts[question.kind] += 1
        encoded.append(item)
    return encoded, counts
