"""One generation's bookkeeping inside ``model.generate``: token ids in, token events out.

transformers hands each new token to a streamer and asks stopping criteria whether to go on;
:class:`TokenCollector` is both, so decoding, stop-sequence detection, cancellation and the
per-token callback live in one place and a stream sees exactly what the completion contains.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from services.common.generation.decoding import IncrementalDecoder
from services.common.generation.engine_types import OnToken, RawCompletion, RawFinish, TokenEvent

# End-of-turn markers of common chat formats; used as EOS only when the tokenizer has them as
# special tokens (the SmolLM2 GGUF declares <|im_start|> as its EOS, not <|im_end|>).
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>")


class LogprobRecorder:
    """A logits processor that only remembers the log-probabilities of the step (before the
    sampling warpers, which transformers applies after custom processors)."""

    def __init__(self) -> None:
        self.last: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.last = scores[0].float().log_softmax(-1)
        return scores


class TokenCollector:
    """Streamer + stopping criterion of one generation: turns token ids into events, spots stop
    sequences and cancellation, and delays each event by one token so the last one can carry
    the finished completion."""

    def __init__(self, tokenizer: Any, special_ids: frozenset[int], eos_ids: frozenset[int],
                 stops: Sequence[str], cancel: threading.Event,
                 on_token: OnToken | None) -> None:
        self._tokenizer = tokenizer
        self._special, self._eos = special_ids, eos_ids
        self._stops = tuple(s for s in stops if s)
        self._longest_stop = max((len(s) for s in self._stops), default=0)
        self._cancel, self._on_token = cancel, on_token
        self._decoder = IncrementalDecoder(tokenizer)
        self._prompt_seen = False
        self._pending: TokenEvent | None = None
        self.tokens: list[TokenEvent] = []
        self.logprobs = LogprobRecorder()
        self.finish: RawFinish | None = None

    # BaseStreamer protocol (duck-typed: generate() only calls put and end)
    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call hands over the prompt
            self._prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self._add(int(token_id))

    def end(self) -> None:
        """Nothing to do: the engine finishes the completion once generate() returns."""

    # StoppingCriteria protocol
    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.finish == "stop_sequence" or self._cancel.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)

    def _add(self, token_id: int) -> None:
        logprob = None if self.logprobs.last is None else float(self.logprobs.last[token_id])
        if token_id in self._special:
            self._attach_to_pending(self._decoder.flush())
            text = self._tokenizer.convert_ids_to_tokens(token_id)
            event = TokenEvent(token_id, text, logprob, True)
            if token_id in self._eos:
                self.finish = "eos_token"
        else:
            before = len(self._decoder.text)
            event = TokenEvent(token_id, self._decoder.push(token_id), logprob, False)
            if self._stops:
                text = self._decoder.text
                window = text[max(0, before - self._longest_stop + 1):]
                if any(stop in window for stop in self._stops):
                    self.finish = "stop_sequence"
        if self._pending is not None:
            self._emit(self._pending, None)
        self._pending = event

    def _attach_to_pending(self, tail: str) -> None:
        if tail and self._pending is not None:
            self._pending = replace(self._pending, text=self._pending.text + tail)

    def _emit(self, event: TokenEvent, final: RawCompletion | None) -> None:
        self.tokens.append(event)
        if self._on_token is not None:
            self._on_token(event, final)

    def finish_with(self, prompt_ids: tuple[int, ...], seed: int | None,
                    elapsed_s: float) -> RawCompletion:
        self._attach_to_pending(self._decoder.flush())
        last, self._pending = self._pending, None
        tokens = (*self.tokens, last) if last is not None else tuple(self.tokens)
        completion = RawCompletion(text=self._decoder.text, tokens=tokens, prompt_ids=prompt_ids,
                                   finish_reason=self.finish or "length", seed=seed,
                                   elapsed_s=elapsed_s)
        if last is not None:
            self._emit(last, completion)
        return completion


def special_ids(tokenizer: Any) -> frozenset[int]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return frozenset({int(i) for i, tok in added.items() if getattr(tok, "special", False)}
                     | set(tokenizer.all_special_ids))


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    special = special_ids(tokenizer)
    for marker in END_MARKERS:
        token_id = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(token_id, int) and token_id in special:
            ids.add(token_id)
    return frozenset(int(i) for i in ids if i is not None)
