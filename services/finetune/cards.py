"""The adapter card (Markdown) and what other servers need to serve an adapter.

vLLM takes ``--enable-lora --lora-modules name=path``; TGI takes ``LORA_ADAPTERS=name=path``;
LoRAX loads per request from ``{"adapter_id": path, "adapter_source": "local"}``. The card
carries all three, so an adapter trained here can be served anywhere the base model is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def vllm_lora_module(name: str, path: str | Path) -> str:
    """One ``--lora-modules`` value; vLLM serves it as model ``name``."""
    return f"{name}={path}"


def lorax_adapter(path: str | Path) -> dict[str, str]:
    """The ``parameters`` LoRAX (and TGI's multi-LoRA) take to load an adapter per request."""
    return {"adapter_id": str(path), "adapter_source": "local"}


def serving_lines(ref: str, name: str, path: str | Path, base_model: str,
                  kind: str = "adapter") -> dict[str, str]:
    """Copy-paste lines for each serving stack, for ``customllm adapters show``. A model
    version (all weights) is served as a model of its own, not as an adapter on the base."""
    if kind == "model":
        return {
            "customllm (OpenAI API)": f'model: "{base_model.split("/")[-1]}:{ref}"',
            "customllm (RAG request)": f'options.adapter: "{ref}"',
            "vLLM": f"vllm serve {path} --served-model-name {name}",
            "TGI": f"MODEL_ID={path}",
            "transformers": f"AutoModelForCausalLM.from_pretrained({str(path)!r})",
        }
    return {
        "customllm (OpenAI API)": f'model: "{base_model.split("/")[-1]}:{ref}"',
        "customllm (RAG request)": f'options.adapter: "{ref}"',
        "vLLM": (f"vllm serve {base_model} --enable-lora "
                 f"--lora-modules {vllm_lora_module(name, path)}"),
        "TGI": f"LORA_ADAPTERS={vllm_lora_module(name, path)}",
        "LoRAX": json.dumps({"parameters": lorax_adapter(path)}),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def adapter_card(*, name: str, version: str, base_model: str, method: str, job_id: str | None,
                 path: str, status: str, hyperparameters: Mapping[str, Any],
                 training: Mapping[str, Any], dataset: Mapping[str, Any],
                 gate: Mapping[str, Any] | None, data_card_markdown: str | None = None,
                 mlflow_run_id: str | None = None, kind: str = "adapter") -> str:
    """Markdown in the spirit of a Hugging Face model card: what it is, how it was trained,
    on what, how it measured against its baseline, and how to serve it."""
    ref = f"{name}@{version}"
    if kind == "model":
        what = ("continued pretraining on the knowledge set" if method == "continued_pretraining"
                else "full fine-tuning")
        head = [f"# Model `{ref}`", "",
                f"Model **{name}**, version **{version}**: every weight of `{base_model}` "
                f"trained by {what}. Served by name in place of the base model.", ""]
    else:
        head = [f"# Adapter `{ref}`", "",
                f"LoRA adapter **{name}**, version **{version}**, for base model "
                f"`{base_model}`.", ""]
    lines = [
        *head,
        "| field | value |", "|---|---|",
        f"| status | {status} |", f"| method | {method} |", f"| job | {job_id or '–'} |",
        f"| dataset snapshot | {dataset.get('snapshot_id') or '–'} |",
        f"| examples | {_fmt(dataset.get('n_examples'))} |",
        f"| MLflow run | {mlflow_run_id or '–'} |", f"| files | `{path}` |", "",
        "## Training", "",
        "| hyperparameter | value |", "|---|---|",
        *(f"| {k} | {_fmt(v)} |" for k, v in sorted(hyperparameters.items())), "",
        f"Steps {_fmt(training.get('steps'))}, final loss {_fmt(training.get('final_loss'))}, "
        f"{_fmt(training.get('duration_s'))} s, {_fmt(training.get('tokens_per_s'))} tokens/s "
        f"on {training.get('device') or 'cpu'}.", "",
        *_answer_examples(training.get("answer_examples"), hyperparameters),
        "## Evaluation gate", "",
    ]
    lines += _gate_section(gate)
    lines += ["", "## Serving", "", "```"]
    lines += [f"# {k}\n{v}"
              for k, v in serving_lines(ref, name, path, base_model, kind).items()]
    lines += ["```", ""]
    if data_card_markdown:
        lines += ["## Data card", "", data_card_markdown.strip(), ""]
    return "\n".join(lines)


def _answer_examples(counts: Mapping[str, int] | None,
                     hyperparameters: Mapping[str, Any]) -> list[str]:
    """What a job continued from the answer adapter could teach on its compact prompt."""
    if not counts:
        return []
    return [f"Continued from `{hyperparameters.get('init_adapter', '?')}` on its compact "
            f"prompt: {counts.get('answerable', 0)} cited answers and "
            f"{counts.get('unanswerable', 0)} \"don't know\" taught; skipped "
            f"{counts.get('not_in_layout', 0)} outside the prompt layout and "
            f"{counts.get('not_writable', 0)} whose answer is not a span of its passage "
            "(paraphrases).", ""]


def _gate_section(gate: Mapping[str, Any] | None) -> list[str]:
    if not gate:
        return ["Not evaluated yet."]
    verdict = "**passed**" if gate.get("passed") else "**failed**"
    out = [f"Gate {verdict}: {gate.get('candidate', '?')} against {gate.get('baseline', '?')}"
           + (f" (runs {gate.get('baseline_run')} → {gate.get('candidate_run')})"
              if gate.get("candidate_run") else "") + ".", ""]
    deltas = gate.get("deltas") or []
    if deltas:
        out += ["| metric | baseline | candidate | delta | 95% CI | n |",
                "|---|---|---|---|---|---|"]
        for d in deltas:
            ci = "–" if d.get("lo") is None else f"[{d['lo']:+.3g}, {d['hi']:+.3g}]"
            delta = "–" if d.get("delta") is None else f"{d['delta']:+.3g}"
            out.append(f"| {d['name']} | {_fmt(d.get('a_mean'))} | {_fmt(d.get('b_mean'))} | "
                       f"{delta} | {ci} | {d.get('n', 0)} |")
        out.append("")
    for failure in gate.get("failures") or []:
        out.append(f"- ✗ {failure}")
    return out
