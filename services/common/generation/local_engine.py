"""The in-process model: SmolLM2 from its GGUF, on the CPU, with LoRA adapters hot-loaded by name.

A registry version of kind ``model`` (full fine-tuning, continued pretraining) named like an
adapter is loaded as a model of its own and answers in place of the base; the most recently
used ``MAX_MODEL_VERSIONS`` stay loaded (each costs what the base costs), and a re-promoted
version is reloaded by its changed weights, like an adapter.

One engine per process (see :func:`shared_engine`) because the model is one object on one CPU:
loading is serialized (two threads loading at once corrupt each other inside transformers), and
so is generation (the active adapter is model state, and two generations would only share the
same cores). Blocking calls (``generate_*``) do the work; ``agenerate_*``/``astream_*`` run them
in a thread so an event loop keeps serving while the model computes.

Two entry points on purpose: ``*_chat`` applies the tokenizer's chat template and cuts the answer
before any stop sequence (OpenAI semantics); ``*_raw`` takes an already-templated prompt and
keeps the stop sequence in its text (TGI semantics), for the gateway's TGI-compatible routes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from services.common import model_store
from services.common.config import Settings
from services.common.exceptions import ModelUnavailable
from services.common.generation.adapters import AdapterFolder, AdapterLibrary
from services.common.generation.base import GenerationError, InvalidGenerationRequest
from services.common.generation.chatml import render_chatml
from services.common.generation.collector import TokenCollector, eos_ids, special_ids
from services.common.generation.engine_types import (
    ChatCompletion,
    GenerationHooks,
    OnToken,
    RawCompletion,
    SamplingParams,
    StreamItem,
)
from services.common.generation.repetition import RepetitionGuard
from services.common.generation.stops import StopBuffer, truncate_at_stop
from services.common.logs import log

logger = logging.getLogger(__name__)
MAX_MODEL_VERSIONS = 1  # full model versions kept loaded beside the base (LRU)


class LocalEngine:
    """The model, its tokenizer and its adapters; see the module docstring for the locking."""

    def __init__(self, gguf: Path, model_id: str, cache_dir: Path, adapters_dir: Path) -> None:
        self.gguf = gguf
        self.model_id = model_id
        self.cache_dir = cache_dir
        self.adapters = AdapterLibrary(adapters_dir)
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()  # one generation at a time; guards adapter state
        self._loaded: model_store.LoadedModel | None = None
        self.load_error: str | None = None
        self._peft: Any = None  # the PeftModel wrapping the base, once an adapter is attached
        self._attached: dict[str, tuple[str, tuple[int, int]]] = {}  # name → (key, version)
        # Full model versions: (folder path, weights version) → model, least recently used first.
        self._models: OrderedDict[tuple[str, tuple[int, int]], Any] = OrderedDict()
        self._keys = itertools.count(1)
        # Async callers queue on a per-loop asyncio lock rather than in worker threads blocked on
        # ``_lock``: a burst of requests must not use up the default thread pool while waiting.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._gates_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalEngine:
        return cls(
            gguf=settings.local_model_gguf or model_store.default_gguf_path(),
            model_id=settings.local_model_id,
            cache_dir=settings.model_cache_dir,
            adapters_dir=settings.adapters_path,
        )

    # -- loading -----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def load_info(self) -> model_store.LoadedModel | None:
        return self._loaded

    def load(self) -> None:
        """Load once; concurrent callers wait for the first one instead of loading again."""
        if self._loaded is not None:
            return
        with self._load_lock:
            if self._loaded is not None:
                return
            _configure_threads()
            try:
                loaded = model_store.load_model(self.gguf, self.model_id, self.cache_dir)
            except GenerationError as exc:
                self.load_error = str(exc)
                raise
            except ModelUnavailable as exc:
                self.load_error = str(exc)
                raise GenerationError(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - whatever breaks loading, say why
                self.load_error = f"{type(exc).__name__}: {exc}"
                raise GenerationError(f"local model {self.model_id} failed to load from "
                                      f"{self.gguf}: {exc}") from exc
            self._special_ids = special_ids(loaded.tokenizer)
            self._eos_ids = eos_ids(loaded.model, loaded.tokenizer)
            self._loaded, self.load_error = loaded, None
            log(logger, logging.INFO, "local model ready", model=self.model_id,
                converted=loaded.converted, seconds=round(loaded.load_s, 2))

    warm_up = load

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._require().tokenizer

    @property
    def end_ids(self) -> frozenset[int]:
        """Token ids that end a generation (end of turn and the tokenizer's EOS)."""
        self.load()
        return self._eos_ids

    @property
    def max_total_tokens(self) -> int:
        self.load()
        return int(getattr(self._require().model.config, "max_position_embeddings", 2048))

    @property
    def dtype(self) -> str:
        self.load()
        return str(self._require().model.dtype)

    def available_adapters(self) -> list[str]:
        return self.adapters.available()

    # -- prompts -----------------------------------------------------------------------------

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The model's own chat template (ChatML when the tokenizer carries none)."""
        tokenizer = self.tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True,
                                                 tokenize=False)
        return render_chatml(messages)

    def encode(self, prompt: str) -> list[int]:
        # The prompt already holds its special tokens (the template wrote them); the GGUF
        # tokenizer would otherwise prepend <|im_start|> as a BOS.
        return list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    # -- blocking generation -----------------------------------------------------------------

    def generate_raw(self, prompt: str, params: SamplingParams, adapter: str | None = None, *,
                     on_token: OnToken | None = None,
                     cancel: threading.Event | None = None,
                     hooks: GenerationHooks | None = None) -> RawCompletion:
        """Generate from a templated prompt. ``on_token`` sees each token (the last one with the
        finished completion); setting ``cancel`` stops generation at the next token; ``hooks``
        add logits processors and work on the output while the model is still held."""
        ids = self.encode(prompt)
        if params.truncate is not None:
            ids = ids[-params.truncate:]
        self._check_lengths(ids, params)
        cancel = cancel or threading.Event()
        with self._lock:
            if cancel.is_set():
                raise GenerationError("generation cancelled before it started")
            model, context = self._model_for(adapter)
            with context:
                return self._run(model, ids, params, on_token, cancel, hooks)

    def generate_chat(self, messages: Sequence[dict[str, str]], params: SamplingParams,
                      adapter: str | None = None, *,
                      cancel: threading.Event | None = None) -> ChatCompletion:
        raw = self.generate_raw(self.chat_prompt(messages), params, adapter, cancel=cancel)
        return _chat_completion(raw, params.stop)

    # -- async wrappers ----------------------------------------------------------------------

    async def agenerate_raw(self, prompt: str, params: SamplingParams,
                            adapter: str | None = None,
                            hooks: GenerationHooks | None = None) -> RawCompletion:
        cancel = threading.Event()
        async with self._gate():
            try:
                return await asyncio.to_thread(self.generate_raw, prompt, params, adapter,
                                               cancel=cancel, hooks=hooks)
            except asyncio.CancelledError:
                cancel.set()  # the caller gave up (timeout, disconnect): free the model
                raise

    async def agenerate_chat(self, messages: Sequence[dict[str, str]], params: SamplingParams,
                             adapter: str | None = None) -> ChatCompletion:
        prompt = await asyncio.to_thread(self.chat_prompt, messages)
        return _chat_completion(await self.agenerate_raw(prompt, params, adapter), params.stop)

    async def astream_raw(self, prompt: str, params: SamplingParams,
                          adapter: str | None = None) -> AsyncIterator[StreamItem]:
        """Tokens as they are generated. Leaving the loop early stops the generation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamItem | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()

        def send(item: StreamItem | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        def work() -> None:
            try:
                self.generate_raw(prompt, params, adapter, cancel=cancel,
                                  on_token=lambda token, final: send(StreamItem(token, final)))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
                send(exc)
            else:
                send(None)

        async with self._gate():
            # work() never raises, so the task needs no awaiting; the reference keeps it alive.
            worker = asyncio.ensure_future(asyncio.to_thread(work))
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.set()  # finished, failed or abandoned: the thread stops at the next token
                del worker

    async def astream_chat(self, messages: Sequence[dict[str, str]], params: SamplingParams,
                           adapter: str | None = None) -> AsyncIterator[str]:
        """Answer text pieces; they concatenate to ``generate_chat``'s text (same decoding,
        same stop-sequence cut)."""
        prompt = await asyncio.to_thread(self.chat_prompt, messages)
        stops = StopBuffer(params.stop)
        stream = self.astream_raw(prompt, params, adapter)
        try:
            async for item in stream:
                if item.token.special:
                    continue
                if piece := stops.feed(item.token.text):
                    yield piece
                if stops.stopped:
                    return
            if tail := stops.flush():
                yield tail
        finally:
            await stream.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _gate(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._gates_lock:
            gate = self._gates.get(loop)
            if gate is None:
                gate = self._gates[loop] = asyncio.Lock()
            return gate

    def _require(self) -> model_store.LoadedModel:
        if self._loaded is None:
            raise GenerationError(f"local model {self.model_id} is not loaded: {self.load_error}")
        return self._loaded

    def _check_lengths(self, ids: list[int], params: SamplingParams) -> None:
        if not ids:
            raise InvalidGenerationRequest("the prompt is empty")
        if params.max_new_tokens < 1:
            raise InvalidGenerationRequest(
                f"max_new_tokens must be >= 1, got {params.max_new_tokens}")
        limit = self.max_total_tokens
        if len(ids) + params.max_new_tokens > limit:
            raise InvalidGenerationRequest(
                f"the prompt has {len(ids)} tokens; with max_new_tokens={params.max_new_tokens} "
                f"that exceeds the model's {limit}-token context")

    def _model_for(self, adapter: str | None) -> tuple[Any, AbstractContextManager[Any]]:
        """The model to call, and the context that selects the adapter (or none) on it."""
        base = self._require().model
        if adapter is None:
            if self._peft is None:
                return base, nullcontext()
            return self._peft, self._peft.disable_adapter()
        folder = self.adapters.resolve(adapter)
        if folder.kind == "model":
            return self._model_version(folder), nullcontext()
        key = self._attach(folder)
        self._peft.set_adapter(key)
        return self._peft, nullcontext()

    def _model_version(self, folder: AdapterFolder) -> Any:
        """A full model version, loaded once per weights version (see the module docstring).
        It keeps the base's tokenizer, so its vocabulary must be the base's."""
        key = (str(folder.path.resolve()), folder.version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        try:
            model = AutoModelForCausalLM.from_pretrained(folder.path, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise GenerationError(f"model version {folder.name!r} in {folder.path} could not be "
                                  f"loaded: {exc}") from exc
        base_vocab = self._require().model.config.vocab_size
        if model.config.vocab_size != base_vocab:
            raise GenerationError(f"model version {folder.name!r} has a vocabulary of "
                                  f"{model.config.vocab_size}, the base's tokenizer "
                                  f"{base_vocab}: it was not trained from {self.model_id}")
        for stale in [k for k in self._models if k[0] == key[0]]:
            del self._models[stale]  # an older version of the same folder
        while len(self._models) >= MAX_MODEL_VERSIONS:
            self._models.popitem(last=False)
        self._models[key] = model.eval()
        log(logger, logging.INFO, "model version loaded", model_version=folder.name,
            label=folder.label, seconds=round(time.perf_counter() - started, 2))
        return model

    def _attach(self, folder: AdapterFolder) -> str:
        """Load the adapter into the peft model unless this version is loaded already; a
        re-promoted adapter (new weights) is loaded under a fresh key and the old one dropped."""
        current = self._attached.get(folder.name)
        if current is not None and current[1] == folder.version:
            return current[0]
        from peft import PeftModel

        key = f"adapter_{next(self._keys)}"
        started = time.perf_counter()
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._require().model, folder.path,
                                                       adapter_name=key, is_trainable=False)
            else:
                self._peft.load_adapter(folder.path, adapter_name=key, is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            if self._peft is None:
                self._restore_base()  # a half-injected adapter must not leak into base output
            raise GenerationError(
                f"adapter {folder.name!r} in {folder.path} could not be loaded onto "
                f"{self.model_id}: {exc}") from exc
        if current is not None:
            self._peft.set_adapter(key)  # peft warns when the active adapter is deleted
            self._peft.delete_adapter(current[0])
        self._attached[folder.name] = (key, folder.version)
        log(logger, logging.INFO, "adapter attached", adapter=folder.name,
            reloaded=current is not None, seconds=round(time.perf_counter() - started, 2))
        return key

    def _restore_base(self) -> None:
        self._loaded = model_store.load_model(self.gguf, self.model_id, self.cache_dir)

    def _run(self, model: Any, ids: list[int], params: SamplingParams,
             on_token: OnToken | None, cancel: threading.Event,
             hooks: GenerationHooks | None = None) -> RawCompletion:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        seed = None
        if params.do_sample:
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            torch.manual_seed(seed)  # global RNG, safe: generation is serialized
        collector = TokenCollector(self._require().tokenizer, self._special_ids, self._eos_ids,
                               params.stop, cancel, on_token)
        input_ids = torch.tensor([ids], dtype=torch.long)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": params.max_new_tokens, "do_sample": params.do_sample,
            "eos_token_id": sorted(self._eos_ids), "pad_token_id": min(self._eos_ids),
            "streamer": collector,
            "stopping_criteria": StoppingCriteriaList([collector, RepetitionGuard(len(ids))]),
            "logits_processor": LogitsProcessorList(
                [collector.logprobs, *(hooks.processors if hooks else ())]),
        }
        if hooks is not None and hooks.after is not None:
            kwargs.update(return_dict_in_generate=True, use_cache=True)
        if hooks is not None and hooks.prepare is not None:
            with torch.inference_mode():
                kwargs.update(hooks.prepare(model, ids))
        if params.do_sample:
            kwargs.update(temperature=params.temperature, top_k=params.top_k or 0,
                          top_p=params.top_p or 1.0, typical_p=params.typical_p or 1.0)
        if params.repetition_penalty is not None:
            kwargs["repetition_penalty"] = params.repetition_penalty
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**kwargs)
            if hooks is not None and hooks.after is not None:
                hooks.after(model, output)
        if cancel.is_set() and collector.finish is None:
            raise GenerationError("generation cancelled")
        return collector.finish_with(tuple(ids), seed, time.perf_counter() - started)


def _chat_completion(raw: RawCompletion, stops: Sequence[str]) -> ChatCompletion:
    text, _ = truncate_at_stop(raw.text, stops)
    return ChatCompletion(text=text, prompt_tokens=len(raw.prompt_ids),
                          completion_tokens=raw.completion_tokens,
                          finish_reason="length" if raw.finish_reason == "length" else "stop")


def _configure_threads() -> None:
    """torch sizes its pool from the host's cores, which in a container or under ``taskset``
    can exceed the cores this process may use; oversubscribed threads make matmuls slower."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if usable and torch.get_num_threads() > usable:
        torch.set_num_threads(usable)


_shared: dict[tuple[str, str, str, str], LocalEngine] = {}
_shared_lock = threading.Lock()


def shared_engine(settings: Settings) -> LocalEngine:
    """The process's engine for these settings (created, not loaded): the rag worker's local
    backend and the gateway's TGI routes share one model instead of loading two."""
    engine = LocalEngine.from_settings(settings)
    key = (str(engine.gguf), engine.model_id, str(engine.cache_dir), str(engine.adapters.root))
    with _shared_lock:
        return _shared.setdefault(key, engine)
