"""A domain's chat examples in the answer adapter's own form, for a job that continues it.

The shipped answers adapter learnt the compact prompt (the sentences about the question,
numbered) and targets the constrained decoder can write (a span of a passage, its marker, or
the "don't know" text). A job started from it (``init_adapter``) on examples in the full
prompt's layout would teach those weights a prompt they are never served with, and the gate
measured the result far below the adapter it started from. So such a job reads each example as
what it is, a question over numbered passages with a cited answer, and re-encodes it exactly
as the adapter's own training data is encoded (:func:`answer_data.encode_example`); the new
version is then served like the adapter it came from.

An example is usable when its user turn is in the layout of the template that rendered it (the
job's domain template, else the default one: ``<context>``, ``[n] title (uri)`` headers,
``Question: ...``), read from the template's own ``user`` and ``context_item`` formats, and its
answer is that template's "don't know" text or a span of one passage with that passage's marker
(``thirty days [2].``). Paraphrased answers cannot be written under the constraint and are
skipped and counted, never taught.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.prompting.prompts import PromptTemplate
from services.finetune.answer_data import Question, encode_example
from services.finetune.chat_data import TokenizedExample
from services.finetune.examples import ChatExample

_CITED = re.compile(r"^(?P<answer>.+?)\s*\[(?P<n>\d+)\]\s*\.?\s*$", re.DOTALL)


class LayoutError(ValueError):
    """A template whose items cannot be read back (no ``{n}`` before ``{text}``)."""


@dataclass(frozen=True)
class Layout:
    """How one template lays out a question over numbered passages, read backwards."""

    template_id: str
    user: re.Pattern[str]  # the user turn: groups ``context`` and ``question``
    header: re.Pattern[str]  # a passage's first line(s), group ``n``; its text runs to the next
    text_suffix: re.Pattern[str] | None  # what the item format writes after ``{text}``
    no_answer: str


def layout_of(template: PromptTemplate) -> Layout:
    """The template's ``user`` and ``context_item`` formats as patterns: literal text matched
    as written (any run of whitespace as any whitespace), ``{context}`` and ``{question}`` as
    what they hold, and an item's fields before ``{text}`` as its header (``{n}`` a number, any
    other field one line's worth)."""
    user = ""
    for literal, field, _, _ in string.Formatter().parse(template.user):
        user += _literal(literal, r"\s*")
        if field in ("context", "question"):
            user += rf"(?P<{field}>.*?)"
        elif field is not None:
            raise LayoutError(f"{template.id}: user uses {{{field}}}")
    cue = template.extractive_cue
    user = rf"^\s*{user}(?:\s*{re.escape(cue)})?\s*$" if cue else rf"^\s*{user}\s*$"
    header, suffix, seen_n, seen_text = "", "", False, False
    for literal, field, _, _ in string.Formatter().parse(template.context_item):
        if seen_text:
            suffix += _literal(literal, r"\s*") + (_item_field(field) if field else "")
            continue
        header += _literal(literal, r"[ \t]*", newline=r"[ \t]*\n")
        if field == "text":
            seen_text = True
        elif field == "n" and not seen_n:
            header, seen_n = header + r"(?P<n>\d+)", True
        elif field is not None:
            header += _item_field(field)
    if not (seen_n and seen_text):
        raise LayoutError(f"{template.id}: context_item needs {{n}} before {{text}}")
    return Layout(template.id, re.compile(user, re.DOTALL),
                  re.compile(rf"^{header}", re.MULTILINE),
                  re.compile(rf"\s*{suffix}\s*$") if suffix else None, template.no_answer)


def _item_field(field: str) -> str:
    """A field of the item format other than ``{text}``: a number, or one line's worth."""
    return r"\d+" if field == "n" else r"[^\n]*?"


def _literal(text: str, space: str, newline: str | None = None) -> str:
    """``text`` as a pattern: each run of whitespace as ``space`` (``newline`` when it holds a
    line break), everything else literally."""
    out = ""
    for part in re.split(r"(\s+)", text):
        if not part:
            continue
        if part.isspace():
            out += newline if newline is not None and "\n" in part else space
        else:
            out += re.escape(part)
    return out


def as_question(example: ChatExample, layouts: Sequence[Layout],
                qid: str = "") -> Question | None:
    """The example's question, passages and cited answer in the first of ``layouts`` its user
    turn is in; None when it is in none, or its answer cites anything but exactly one of its
    passages."""
    turns = example.messages
    if len(turns) < 2 or turns[-1].get("role") != "assistant" or \
            turns[-2].get("role") != "user":
        return None
    user, answer = turns[-2].get("content", ""), turns[-1].get("content", "").strip()
    for layout in layouts:
        read = layout.user.match(user)
        if read is None or not read["question"].strip():
            continue
        passages = _passages(layout, read["context"])
        if passages:
            return _answered(qid, read["question"].strip(), passages, answer, layout.no_answer)
    return None


def _answered(qid: str, question: str, passages: tuple[tuple[int, str], ...], answer: str,
              no_answer: str) -> Question | None:
    if answer.rstrip(".") == no_answer.rstrip("."):
        return Question(qid, "", question, (), passages, None, "unanswerable")
    cited = _CITED.match(answer)
    if cited is None or "[" in cited["answer"]:
        return None
    n = int(cited["n"])
    if n not in {m for m, _ in passages}:
        return None
    return Question(qid, "", question, (cited["answer"].strip(),), passages, n, "answerable")


def _passages(layout: Layout, body: str) -> tuple[tuple[int, str], ...]:
    headers = list(layout.header.finditer(body))
    out = []
    for at, header in enumerate(headers):
        end = headers[at + 1].start() if at + 1 < len(headers) else len(body)
        text = body[header.end():end].strip()
        if layout.text_suffix is not None:
            text = layout.text_suffix.sub("", text, count=1).strip()
        if text:
            out.append((int(header["n"]), text))
    return tuple(out)


def encode(examples: Sequence[ChatExample], tokenizer: Any, end_ids: frozenset[int],
           layouts: Sequence[Layout], focus_sentences: int
           ) -> tuple[list[TokenizedExample], dict[str, int]]:
    """The usable examples as the adapter's training ids, and what happened to each. A "don't
    know" is taught as the first layout's text (the job's domain: the one serving constrains
    the answers of that domain to), whichever layout the example was written in."""
    counts = {"answerable": 0, "unanswerable": 0, "not_in_layout": 0, "not_writable": 0}
    encoded: list[TokenizedExample] = []
    no_answer = layouts[0].no_answer
    for number, example in enumerate(examples):
        question = as_question(example, layouts, str(number))
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
