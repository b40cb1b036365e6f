"""Build the shipped answer adapter (``answers``) reproducibly: data, LoRA training, data card.

    .venv/bin/python -m services.finetune.default_adapter \
        --squad ../shared/datasets/squad_v11_train_11articles.json \
        --squad2 ../shared/datasets/squad_v2_dev_5articles.json
    # or: customllm finetune build-default ...

The examples are :mod:`services.finetune.answer_data`'s (training articles only, token ids as
serving sends them); training is LoRA on every linear layer of the served base, seeded, on the
CPU. The weights are stored in float16 (half the size; the engine loads them into its float32
model), next to ``customllm-training.json`` (configuration, loss curve) and ``datacard.json``
(sources, licence, split, counts, file hashes). The same inputs and seed give the same data and
the same initial weights; the trained weights agree up to floating-point reduction order.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from services.common.generation.answer_adapter import LEGACY_FOCUS_SENTENCES
from services.common.generation.evidence_prompt import PROMPT_VERSION
from services.finetune.answer_data import (
    DISTRACTORS,
    QUESTION_WORDS_INSIDE,
    SPLIT,
    DataSpec,
    build,
    file_sha256,
)
from services.finetune.training import TrainingCancelled, TrainingConfig

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "common" / "generation" / "shipped"
ADAPTER_NAME = "answers"
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONFIG = TrainingConfig(
    method="lora", epochs=1.0, learning_rate=5e-4, lora_r=16, lora_alpha=32,
    lora_dropout=0.05, target_modules=ALL_LINEAR, max_seq_len=512, batch_size=8,
    grad_accum=1, warmup_ratio=0.05, seed=20261202, lr_scheduler="linear",
    lora_top_layers=16, save_steps=20)
# One full epoch (315 steps of 8, ~37 minutes on two quiet cores). Set a step count to stop
# earlier on a slower machine: the linear schedule still spans the epoch, and the last
# checkpoint is the adapter.
STOP_AFTER_STEPS: int | None = None
LICENCE = "CC BY-SA 4.0 (SQuAD 1.1 and SQuAD 2.0, Rajpurkar et al.)"

logger = logging.getLogger(__name__)


def build_default(out_dir: Path, squad11: Path, squad2: Path, *,
                  spec: DataSpec | None = None, config: TrainingConfig = CONFIG,
                  max_steps: int | None = None,
                  stop_after: int | None = STOP_AFTER_STEPS) -> dict[str, Any]:
    """Train the adapter into ``out_dir``; returns the data card (also written there)."""
    import torch

    from services.common.config import get_settings
    from services.common.generation.collector import eos_ids
    from services.common.prompting.prompts import load_template
    from services.finetune.training import _load_base, _run, _with_lora

    spec = spec or DataSpec()
    if max_steps is not None:
        config = TrainingConfig(**{**config.as_dict(), "target_modules": config.target_modules,
                                   "max_steps": max_steps})
    settings = get_settings()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    model, tokenizer, folder = _load_base(settings, config)
    no_answer = load_template("default").no_answer
    examples, counts = build(tokenizer, eos_ids(model, tokenizer), squad11, squad2, no_answer,
                             spec)
    logger.warning("data: %s (%.0f s)", counts, time.perf_counter() - started)
    model = _with_lora(model, config, folder)
    work = out_dir.parent / f".{out_dir.name}-work"
    shutil.rmtree(work, ignore_errors=True)  # a stale checkpoint would be resumed
    try:
        result = _run(model, tokenizer, folder, examples, config, out_dir, work,
                      keep_checkpoints=True, on_progress=_log_progress,
                      should_stop=_StopAfter(stop_after), settings=settings,
                      started=started, n_examples=len(examples), n_truncated=0)
        steps, final_loss = result.steps, result.final_loss
    except TrainingCancelled as cut:
        if cut.checkpoint is None:
            raise
        steps, final_loss = from_checkpoint(cut.checkpoint, out_dir)
    shutil.rmtree(work, ignore_errors=True)
    training = {"steps": steps, "final_loss": final_loss,
                "train_s": round(time.perf_counter() - started, 1), "device": "cpu"}
    return finalize(out_dir, squad11, squad2, spec, config, counts,
                    {"stop_after_steps": stop_after, **training})


class _StopAfter:
    """``should_stop`` of the training loop: true after ``steps`` optimizer steps (the
    schedule still spans the whole epoch, so the stop is part of the recipe)."""

    def __init__(self, steps: int | None) -> None:
        self.steps, self.calls = steps, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.steps is not None and self.calls >= self.steps


def from_checkpoint(checkpoint: Path, out_dir: Path) -> tuple[int, float | None]:
    """The adapter files of a trainer checkpoint into ``out_dir``; (step, last logged loss)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(checkpoint / name, out_dir / name)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    losses = [(e["step"], e["loss"]) for e in state.get("log_history", []) if "loss" in e]
    (out_dir / "customllm-training.json").write_text(json.dumps(
        {"steps": state.get("global_step"), "loss_curve": losses}, indent=1))
    return int(state.get("global_step", 0)), (losses[-1][1] if losses else None)


def finalize(out_dir: Path, squad11: Path, squad2: Path, spec: DataSpec,
             config: TrainingConfig, counts: dict[str, Any],
             training: dict[str, Any]) -> dict[str, Any]:
    """float16 weights, a portable config, the data card (JSON and README.md)."""
    from services.common.config import get_settings
    from services.common.prompting.prompts import load_template

    settings = get_settings()
    no_answer = load_template("default").no_answer
    _to_float16(out_dir)
    _portable_config(out_dir)
    card = {
        "adapter": ADAPTER_NAME, "base_model": settings.local_model_id,
        "task": "extractive cited answers over the compact prompt "
                "(services/common/generation/evidence_prompt.py), or the no-answer text",
        "no_answer": no_answer,
        "sources": {
            "squad_v11": {"file": squad11.name, "sha256": file_sha256(squad11),
                          "articles": SPLIT["squad_v11"]},
            "squad_v2": {"file": squad2.name, "sha256": file_sha256(squad2),
                         "articles": SPLIT["squad_v2"]},
        },
        "licence": LICENCE,
        "split": "by article: training articles only; calibration articles choose the "
                 "abstention threshold; held-out articles are what the benchmark reports",
        # the constraint the targets were written under; serving applies the same
        "prompt_version": PROMPT_VERSION,  # serving refuses weights of another prompt
        "constraint": {"question_words_inside": QUESTION_WORDS_INSIDE,
                       "focus_sentences": spec.focus_sentences},
        "data_spec": asdict(spec), "counts": counts,
        "training": {**config.as_dict(), **training},
        # the weights and their configuration; the card's own files are written after it
        "files": {p.name: file_sha256(p) for p in sorted(out_dir.iterdir()) if p.is_file()
                  and p.name not in ("datacard.json", "README.md", "gate.json")},
    }
    (out_dir / "datacard.json").write_text(json.dumps(card, indent=1, ensure_ascii=False))
    write_card_markdown(out_dir, card)
    return card


def write_card_markdown(out_dir: Path, card: dict[str, Any]) -> None:
    """``README.md`` of the folder (over peft's template): what a reader of the repository
    needs to trust or rebuild it; the gate's figures are added by the benchmark."""
    counts, training = card["counts"], card["training"]
    stopped = ("training ran the whole epoch" if training.get("stop_after_steps") is None
               else f"training stops after {training['stop_after_steps']} steps")
    rows = "\n".join(f"| {kind} | {c['available']} | {c['used']} | {c['skipped']} |"
                     for kind, c in counts.items() if isinstance(c, dict))
    inside = card.get("constraint", {}).get("question_words_inside", False)
    kept = card.get("constraint", {}).get("focus_sentences", LEGACY_FOCUS_SENTENCES)
    others = ("the question's own paragraph (left out for the answerable questions taught "
              "\"don't know\") and the nearest others of the training articles by BM25, in "
              "rank order, as retrieval hands them over"
              if card.get("data_spec", {}).get("distractors") == "nearest" else
              "its own paragraph and random others of its article, in a seeded order")
    rule = ("may run through the question's words but never start with one" if inside
            else "never contain the question's words")
    sources = "\n".join(
        f"- `{s['file']}` (sha256 `{s['sha256'][:16]}…`): train "
        f"{', '.join(s['articles']['train'])}; calibration "
        f"{', '.join(s['articles']['calibration'])}; held out "
        f"{', '.join(s['articles']['heldout'])}" for s in card["sources"].values())
    text = f"""# Shipped answer adapter `{card['adapter']}`

LoRA on `{card['base_model']}` for {card['task']}.
Rebuild: `customllm finetune build-default --squad
../shared/datasets/squad_v11_train_11articles.json --squad2
../shared/datasets/squad_v2_dev_5articles.json` (seed {training['seed']}).

**Licence of the training data:** {card['licence']}.

**Split:** {card['split']}.

{sources}

Each question is shown three passages: {others}.
Targets are written under the evidence constraint the server applies to this version: spans
of the {kept} sentences about the question that {rule} (`constraint` in `datacard.json`).

| examples | available | used | skipped (answer not writable under the constraint) |
|---|---|---|---|
{rows}

{counts['total']} examples, mean prompt {counts['prompt_tokens_mean']} tokens. LoRA r
{training['lora_r']}, alpha {training['lora_alpha']}, modules
{', '.join(training['target_modules'])}, top {training['lora_top_layers']} layers, lr
{training['learning_rate']}, batch
{training['batch_size']}, {training['steps']} steps, final loss {training['final_loss']},
{training['train_s']} s on {training['device']}. Weights stored in float16. The schedule
spans the epoch; {stopped}. Examples' ids hash (a rebuild must match):
`{counts.get('examples_sha256', '?')}`.

Gate, calibrated "don't know" margin and held-out figures: `gate.json` (its `command` says
which benchmark wrote it).
"""
    (out_dir / "README.md").write_text(text)


def _log_progress(progress: Any) -> None:
    if progress.step % 10 == 0 or progress.step == progress.total_steps:
        logger.warning("step %d/%d loss %.4f", progress.step, progress.total_steps,
                       progress.loss or 0.0)


def _to_float16(out_dir: Path) -> None:
    """Store the LoRA weights in float16: half the bytes, no measurable change in answers."""
    from safetensors.torch import load_file, save_file

    path = out_dir / "adapter_model.safetensors"
    tensors = {k: v.half().contiguous() for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def _portable_config(out_dir: Path) -> None:
    """``base_model_name_or_path`` names this machine's cache folder; the engine always loads
    the adapter onto its own base, so the shipped config names the model id instead. peft
    writes ``target_modules`` from a set: sorted, a rebuild gives the same file and hash."""
    from services.common.config import get_settings

    path = out_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = get_settings().local_model_id
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD 1.1 (11 articles)")
    parser.add_argument("--squad2", type=Path, required=True, help="SQuAD 2.0 (5 articles)")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR / ADAPTER_NAME)
    parser.add_argument("--max-steps", type=int, default=None, help="for a quick trial only")
    parser.add_argument("--focus-sentences", type=int, default=DataSpec().focus_sentences,
                        help="sentences of the compact prompt (the card records it)")
    parser.add_argument("--answerable", type=int, default=DataSpec().answerable,
                        help="answerable SQuAD 1.1 / 2.0 training questions to use")
    parser.add_argument("--unanswerable", type=int, default=DataSpec().squad2_unanswerable,
                        help="unanswerable SQuAD 2.0 training questions to use")
    parser.add_argument("--gold-left-out", type=int, default=DataSpec().gold_left_out,
                        help="answerable questions shown three passages without their answer")
    parser.add_argument("--distractors", choices=DISTRACTORS,
                        default=DataSpec().distractors,
                        help="the other two passages: random paragraphs of the article, or "
                             "the nearest by BM25 (what retrieval hands over)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    card = build_default(args.out, args.squad, args.squad2, max_steps=args.max_steps,
                         spec=DataSpec(focus_sentences=args.focus_sentences,
                                       answerable=args.answerable,
                                       squad2_unanswerable=args.unanswerable,
                                       gold_left_out=args.gold_left_out,
                                       distractors=args.distractors))
    sys.stdout.write(json.dumps({k: card[k] for k in ("counts", "training")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
