"""Supervision examples as chat messages, and parsing them from JSONL.

Two line formats are accepted, the two an engineer coming from Axolotl, LLaMA-Factory or TRL
already has on disk:

* Alpaca style: ``{"instruction": ..., "input": ..., "output": ..., "system": ...}`` (``input``
  and ``system`` optional). Instruction and input become one user message, separated by a blank
  line, as Alpaca's own template does.
* Conversational: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (OpenAI / TRL shape).

Either way the example becomes one :class:`ChatExample`, whose identity is a content hash of its
messages, so importing the same file twice adds nothing. Bad lines are reported with their line
number and what is wrong, and never stop the good lines from being read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from services.common.exceptions import CustomLLMError
from services.common.supervision_review import content_hash

ROLES = ("system", "user", "assistant")
# Extra keys a line may carry besides the example itself; they travel as metadata.
META_KEYS = frozenset({"id", "source", "license", "privacy_class", "tags", "lineage", "meta"})
ALPACA_KEYS = frozenset({"instruction", "input", "output", "system"})


class ExampleError(CustomLLMError):
    """A supervision example that cannot be used."""


class ChatExample(BaseModel):
    """One training conversation; the loss is taken on its assistant turns only."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    messages: list[dict[str, str]]

    @field_validator("messages")
    @classmethod
    def _valid(cls, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        if not messages:
            raise ValueError("messages is empty")
        for i, message in enumerate(messages):
            if set(message) != {"role", "content"}:
                raise ValueError(f"message {i} must have exactly the keys role and content, "
                                 f"got {sorted(message)}")
            if message["role"] not in ROLES:
                raise ValueError(f"message {i} has role {message['role']!r}; expected one of "
                                 f"{', '.join(ROLES)}")
            if not message["content"].strip():
                raise ValueError(f"message {i} ({message['role']}) has empty content")
        if any(m["role"] == "system" for m in messages[1:]):
            raise ValueError("a system message may only come first")
        if messages[-1]["role"] != "assistant":
            raise ValueError("the last message must be the assistant's (the target)")
        if not any(m["role"] == "user" for m in messages):
            raise ValueError("there is no user message")
        return messages

    @property
    def example_id(self) -> str:
        """Content hash of the messages: the same conversation is the same example."""
        return content_hash(self.messages)

    @property
    def prompt(self) -> list[dict[str, str]]:
        """Everything before the final assistant turn (what a model is asked at inference)."""
        return self.messages[:-1]

    @property
    def target(self) -> str:
        """The final assistant turn."""
        return self.messages[-1]["content"]


def from_alpaca(instruction: str, output: str, input: str = "",  # noqa: A002 - Alpaca's name
                system: str | None = None) -> ChatExample:
    user = instruction.strip() if not input.strip() else f"{instruction.strip()}\n\n{input.strip()}"
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if system and system.strip():
        messages.insert(0, {"role": "system", "content": system})
    return ChatExample(messages=messages)


@dataclass(frozen=True)
class ParsedLine:
    """A good line: the example plus the metadata keys it carried, and where it came from."""

    line: int
    example: ChatExample
    meta: dict[str, Any]


@dataclass(frozen=True)
class LineError:
    line: int
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


def parse_record(record: Any) -> tuple[ChatExample, dict[str, Any]]:
    """One decoded JSON value → example + metadata; :class:`ExampleError` says what is wrong."""
    if not isinstance(record, dict):
        raise ExampleError(f"expected a JSON object, got {type(record).__name__}")
    meta = {k: record[k] for k in META_KEYS if k in record}
    body = {k: v for k, v in record.items() if k not in META_KEYS}
    try:
        if "messages" in body:
            extra = set(body) - {"messages"}
            if extra:
                raise ExampleError(f"unknown keys {', '.join(sorted(extra))} beside messages")
            if not isinstance(body["messages"], list):
                raise ExampleError("messages must be a list")
            return ChatExample(messages=body["messages"]), meta
        if "instruction" in body or "output" in body:
            extra = set(body) - ALPACA_KEYS
            if extra:
                raise ExampleError(f"unknown keys {', '.join(sorted(extra))}; the instruction "
                                   f"format takes {', '.join(sorted(ALPACA_KEYS))}")
            for key in ("instruction", "output"):
                if not isinstance(body.get(key), str) or not body[key].strip():
                    raise ExampleError(f"{key} must be a non-empty string")
            for key in ("input", "system"):
                if key in body and not isinstance(body[key], str):
                    raise ExampleError(f"{key} must be a string")
            return from_alpaca(body["instruction"], body["output"], body.get("input", ""),
                               body.get("system")), meta
    except ValidationError as exc:
        raise ExampleError("; ".join(_pydantic_reason(e) for e in exc.errors())) from None
    raise ExampleError("neither a 'messages' list nor 'instruction'/'output' keys")


def _pydantic_reason(error: Any) -> str:
    message = str(error.get("msg", error))
    return message.removeprefix("Value error, ")


def parse_lines(lines: Iterable[str]) -> Iterator[ParsedLine | LineError]:
    """Each non-blank line parsed; bad ones come back as :class:`LineError`, in order."""
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("//"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield LineError(number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        try:
            example, meta = parse_record(record)
        except ExampleError as exc:
            yield LineError(number, str(exc))
            continue
        yield ParsedLine(number, example, meta)


def read_jsonl(path: Path) -> tuple[list[ParsedLine], list[LineError]]:
    """All good lines and all errors of a file."""
    good: list[ParsedLine] = []
    bad: list[LineError] = []
    with path.open(encoding="utf-8") as handle:
        for item in parse_lines(handle):
            (good if isinstance(item, ParsedLine) else bad).append(item)
    return good, bad


def write_jsonl(path: Path, examples: Iterable[ChatExample]) -> int:
    """Conversational format, one example per line; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps({"messages": example.messages}, ensure_ascii=False) + "\n")
            count += 1
    return count
