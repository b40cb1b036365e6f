"""Token ids → text pieces, one per generated token, that concatenate to the whole text.

Decoding a single token id can cut a multi-byte character in half (giving ``"\\ufffd"``) or
lose a leading space, so each piece is the difference between two decodes of a short window
(TGI's prefix/read offsets). Both the streamed pieces and the final text come from here, which
is what makes a stream concatenate to exactly the non-streamed text.
"""

from __future__ import annotations

from typing import Any


class IncrementalDecoder:
    """Feeds non-special token ids one at a time; returns the text each one completes."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # end of the text already handed out
        self._text = ""

    def push(self, token_id: int) -> str:
        """The new text, or "" while the token only starts an unfinished character."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix:self._read])
        new_text = self._decode(self._ids[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            piece = new_text[len(prefix_text):]
            self._prefix, self._read = self._read, len(self._ids)
            self._text += piece
            return piece
        return ""

    def flush(self) -> str:
        """Text still held back at the end (an unfinished character decodes as ``\\ufffd``)."""
        if self._read == len(self._ids):
            return ""
        prefix_text = self._decode(self._ids[self._prefix:self._read])
        piece = self._decode(self._ids[self._prefix:])[len(prefix_text):]
        self._prefix = self._read = len(self._ids)
        self._text += piece
        return piece

    @property
    def text(self) -> str:
        """Everything handed out so far."""
        return self._text

    def _decode(self, ids: list[int]) -> str:
        # No clean-up: it rewrites " ." to "." depending on what follows, which would make a
        # piece differ from its slice of the whole text.
        return self._tokenizer.decode(ids, skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False)
