"""Stop sequences cut whole texts and streams at the same place."""

import pytest

from services.common.generation.stops import StopBuffer, truncate_at_stop

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "stops", "expected"), [
    ("Paris is big.", ["big"], ("Paris is ", True)),
    ("Paris is big.", ["nope"], ("Paris is big.", False)),
    ("a STOP b END c", ["END", "STOP"], ("a ", True)),  # the earliest, whatever the order
    ("abc", [], ("abc", False)),
    ("abc", [""], ("abc", False)),
])
def test_truncate_at_stop(text, stops, expected):
    assert truncate_at_stop(text, stops) == expected


def _stream(pieces, stops):
    buffer = StopBuffer(stops)
    out = [buffer.feed(piece) for piece in pieces]
    return out, buffer.flush(), buffer.stopped


def test_holds_back_a_possible_stop_prefix_until_decided():
    out, tail, stopped = _stream(["Hello <|im", "_end|> more"], ["<|im_end|>"])
    assert out == ["Hello ", ""] and tail == "" and stopped


def test_releases_a_held_prefix_that_turned_out_not_to_be_a_stop():
    out, tail, stopped = _stream(["Hello <|im", "portant"], ["<|im_end|>"])
    assert "".join(out) + tail == "Hello <|important" and not stopped


def test_flush_releases_the_held_prefix_at_the_end():
    out, tail, stopped = _stream(["Hello <|im"], ["<|im_end|>"])
    assert out == ["Hello "] and tail == "<|im" and not stopped


def test_nothing_comes_out_after_a_stop():
    buffer = StopBuffer(["X"])
    assert buffer.feed("abXcd") == "ab"
    assert buffer.feed("more") == "" and buffer.flush() == ""


@pytest.mark.parametrize("text", ["The capital of France is Paris. END of answer", "no stop here",
                                  "abcd then bc", "<|im_end|>"])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_any_split_of_a_stream_gives_the_truncated_text(text, size):
    stops = ["END", "bc", "<|im_end|>"]
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    out, tail, _ = _stream(pieces, stops)
    assert "".join(out) + tail == truncate_at_stop(text, stops)[0]
