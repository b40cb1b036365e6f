"""Cutting text at stop sequences, identically for whole texts and for streams.

Servers stop *after* the token that completes a stop sequence (and TGI keeps the sequence in
its text), while a chat answer must end right *before* it. Both helpers cut at the earliest
occurrence of any stop sequence, so a streamed answer concatenates to exactly the generated one.
"""

from __future__ import annotations

from collections.abc import Sequence


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop sequence, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


class StopBuffer:
    """Feeds stream pieces, hands back only text that can no longer be part of a stop sequence.

    A piece ending in a prefix of a stop sequence (``"<|im"`` of ``"<|im_end|>"``) is held
    back until the next piece decides; once a stop sequence appears, nothing more comes out.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._text = ""
        self._emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The part of the text so far that is now safe to emit."""
        if self.stopped:
            return ""
        self._text += piece
        kept, self.stopped = truncate_at_stop(self._text, self._stops)
        end = len(kept) if self.stopped else len(kept) - self._held_back(kept)
        return self._emit(end)

    def flush(self) -> str:
        """Whatever was held back, at the end of the stream (it was not a stop sequence)."""
        if self.stopped:
            return ""
        return self._emit(len(self._text))

    def _held_back(self, text: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _emit(self, end: int) -> str:
        end = max(end, self._emitted)
        piece, self._emitted = self._text[self._emitted:end], end
        return piece
