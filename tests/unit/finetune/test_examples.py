"""JSONL supervision examples: both formats, identity by content, per-line errors."""

from __future__ import annotations

import json

import pytest

from services.finetune.examples import (
    ChatExample,
    LineError,
    ParsedLine,
    content_hash,
    parse_lines,
    read_jsonl,
    write_jsonl,
)

pytestmark = pytest.mark.unit


def test_alpaca_line_becomes_user_and_assistant_turns():
    [parsed] = list(parse_lines([json.dumps(
        {"instruction": "Translate to French.", "input": "cat", "output": "chat",
         "license": "CC0", "tags": ["fr"]})]))
    assert isinstance(parsed, ParsedLine)
    assert parsed.example.messages == [
        {"role": "user", "content": "Translate to French.\n\ncat"},
        {"role": "assistant", "content": "chat"}]
    assert parsed.meta == {"license": "CC0", "tags": ["fr"]}


def test_alpaca_system_goes_first_and_empty_input_is_dropped():
    [parsed] = list(parse_lines([json.dumps(
        {"system": "Be brief.", "instruction": "Say hi.", "input": "", "output": "Hi."})]))
    assert [m["role"] for m in parsed.example.messages] == ["system", "user", "assistant"]
    assert parsed.example.messages[1]["content"] == "Say hi."


def test_messages_line_is_taken_as_is():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a [1]."}]
    [parsed] = list(parse_lines([json.dumps({"messages": messages, "source": "kb"})]))
    assert parsed.example.messages == messages
    assert parsed.example.prompt == messages[:2]
    assert parsed.example.target == "a [1]."
    assert parsed.meta == {"source": "kb"}


def test_same_conversation_same_id_whatever_the_key_order():
    a = ChatExample(messages=[{"role": "user", "content": "q"},
                              {"role": "assistant", "content": "a"}])
    b = ChatExample(messages=[{"content": "q", "role": "user"},
                              {"content": "a", "role": "assistant"}])
    c = ChatExample(messages=[{"role": "user", "content": "q"},
                              {"role": "assistant", "content": "b"}])
    assert a.example_id == b.example_id == content_hash(a.messages)
    assert a.example_id != c.example_id
    assert len(a.example_id) == 64


@pytest.mark.parametrize(("line", "expected"), [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"instruction": "x"}', "output must be a non-empty string"),
    ('{"instruction": "x", "output": "y", "colour": "red"}', "unknown keys colour"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "last message must be the assistant"),
    ('{"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "a"}]}',
     "role 'bot'"),
    ('{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]}',
     "empty content"),
    ('{"messages": [{"role": "assistant", "content": "a"}]}', "no user message"),
    ('{"messages": "hello"}', "messages must be a list"),
    ('{"question": "q", "answer": "a"}', "neither a 'messages' list"),
])
def test_bad_lines_are_reported_with_their_reason(line, expected):
    [item] = list(parse_lines([line]))
    assert isinstance(item, LineError)
    assert item.line == 1
    assert expected in item.error


def test_good_lines_survive_bad_ones_and_errors_name_their_line(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join([
        json.dumps({"instruction": "a", "output": "b"}),
        "",
        "{broken",
        json.dumps({"messages": [{"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "r"}]}),
    ]) + "\n")
    good, bad = read_jsonl(path)
    assert [g.line for g in good] == [1, 4]
    assert [(e.line, str(e).split(":")[0]) for e in bad] == [(3, "line 3")]


def test_write_then_read_round_trips(tmp_path):
    examples = [ChatExample(messages=[{"role": "user", "content": f"q{i}"},
                                      {"role": "assistant", "content": f"a{i}"}])
                for i in range(3)]
    path = tmp_path / "out" / "set.jsonl"
    assert write_jsonl(path, examples) == 3
    good, bad = read_jsonl(path)
    assert not bad
    assert [g.example for g in good] == examples
