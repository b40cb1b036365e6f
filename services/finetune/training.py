"""LoRA / QLoRA training of an adapter on the served base model.

The base is the very model serving runs (``services.common.model_store``: the packaged GGUF,
converted once to float32 safetensors), so an adapter always matches the weights it is served
on. Examples are rendered with the tokenizer's chat template and the loss is taken on assistant
tokens only (:mod:`services.finetune.chat_data`). Training runs on transformers' ``Trainer``
(what TRL's ``SFTTrainer``, Axolotl and LLaMA-Factory build on), so checkpoints, resumption,
warm-up, gradient accumulation and seeding behave the way an ML engineer expects.

* ``method="qlora"`` loads the base in 4-bit NF4 with bitsandbytes on a CUDA GPU; without one it
  raises :class:`QLoRAUnavailable` before anything is loaded.
* ``checkpoint_dir``: checkpoints are written there every ``save_steps`` and at the end; if one
  exists when training starts, training resumes from the latest (optimizer, scheduler, RNG and
  step count included).
* ``should_stop``: polled after every optimizer step; when it answers True a checkpoint is saved
  (if there is a checkpoint dir) and :class:`TrainingCancelled` is raised.
* ``on_progress``: called after every step with the step's loss. No tqdm bars: the worker's logs
  stay readable and the CLI draws its own progress.

The adapter is written to ``output_dir`` with peft's ``save_pretrained`` (``adapter_config.json``
+ ``adapter_model.safetensors``), which is what ``services/common/generation/adapters.py`` serves,
plus ``customllm-training.json`` recording the configuration, the base and the result.

All weights (:func:`train_model`): ``method="full"`` trains every weight of the base on the same
chat examples (loss on assistant tokens); ``method="continued_pretraining"`` trains every weight
as a causal LM on plain texts (the knowledge set's chunks that the job's policy allows, see
:mod:`services.finetune.corpus`), packed into ``max_seq_len``-token blocks with the loss on every
token. The result is a complete model folder (``config.json``, ``model.safetensors``, the
tokenizer), served by name like an adapter. Meant for small models: SmolLM2-135M in float32 with
AdamW needs about 2 GB beside its activations.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.common import model_store
from services.common.config import Settings, get_settings
from services.common.exceptions import CustomLLMError
from services.common.generation.answer_adapter import (
    DATACARD_FILE,
    answers_on_compact_prompt,
    focus_sentences,
)
from services.common.generation.evidence_prompt import PROMPT_VERSION
from services.common.logs import log
from services.finetune import disk
from services.finetune.chat_data import (
    IGNORE_INDEX,
    TokenizedExample,
    pad_batch,
    tokenize_example,
)
from services.finetune.examples import ChatExample
from services.finetune.hardware import QLoRAUnavailable, cpu_threads, require_qlora

__all__ = [
    "MODEL_METHODS", "QLoRAUnavailable", "TrainingCancelled", "TrainingConfig", "TrainingError",
    "TrainingProgress", "TrainingResult", "train_adapter", "train_model",
]

logger = logging.getLogger(__name__)
MANIFEST = "customllm-training.json"
ADAPTER_METHODS = ("lora", "qlora")
MODEL_METHODS = ("full", "continued_pretraining")  # all weights: the result is a model version
# Full fine-tuning moves every weight: a LoRA learning rate would wreck the base in a few steps.
FULL_LEARNING_RATE = 5e-5


def is_model_method(method: str) -> bool:
    return method in MODEL_METHODS


class TrainingError(CustomLLMError):
    """Training cannot start or failed (bad configuration, nothing to learn from)."""


class TrainingCancelled(CustomLLMError):
    """``should_stop`` asked training to stop; the last checkpoint (if any) can resume it."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        where = f"; resume from {checkpoint}" if checkpoint else ""
        super().__init__(f"training cancelled at step {step}{where}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults suit a few hundred examples on a small model: LoRA on the attention
    projections, r=16, lr 2e-4, three epochs. Every field can be set from a job's
    hyperparameters (:meth:`from_hyperparameters`)."""

    method: Literal["lora", "qlora", "full", "continued_pretraining"] = "lora"
    epochs: float = 3.0
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_seq_len: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    seed: int = 42
    max_steps: int | None = None
    # Adapt only the top N decoder layers (None: all). Backpropagation then stops at the lowest
    # adapted layer, which makes a CPU step about 3× cheaper for a format-and-citation task.
    lora_top_layers: int | None = None
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    save_steps: int = 50  # checkpoint interval, when a checkpoint dir is given
    # A registered adapter (``name`` or ``name@vN``) whose LoRA weights training starts from
    # instead of fresh ones: a domain's few examples specialise the shipped answers adapter
    # rather than teach the base to cite from scratch. Its LoRA shape fixes this job's.
    init_adapter: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.method not in ADAPTER_METHODS + MODEL_METHODS:
            problems.append(f"method must be one of {', '.join(ADAPTER_METHODS + MODEL_METHODS)}"
                            f", got {self.method!r}")
        for name in ("lora_r", "lora_alpha", "max_seq_len", "batch_size", "grad_accum",
                     "save_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.epochs <= 0:
            problems.append("epochs must be positive")
        if not 0 < self.learning_rate < 1:
            problems.append("learning_rate must be in (0, 1)")
        if not 0 <= self.lora_dropout < 1:
            problems.append("lora_dropout must be in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("warmup_ratio must be in [0, 1)")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append("max_steps must be at least 1 (or unset)")
        if self.lora_top_layers is not None and self.lora_top_layers < 1:
            problems.append("lora_top_layers must be at least 1 (or unset)")
        if not self.target_modules:
            problems.append("target_modules is empty")
        if self.init_adapter is not None and self.method != "lora":
            problems.append(f"init_adapter continues a LoRA adapter: method must be lora, "
                            f"not {self.method}")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    @classmethod
    def from_hyperparameters(cls, hp: Mapping[str, Any]) -> TrainingConfig:
        """Known keys only; an unknown key is a typo that would otherwise be silently ignored,
        so it raises ``ValueError`` naming it and the known keys."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(hp) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key, value in hp.items():
            if key == "target_modules":
                if isinstance(value, str):
                    value = [part.strip() for part in value.split(",") if part.strip()]
                values[key] = tuple(str(v) for v in value)
            elif key in ("max_steps", "lora_top_layers"):
                values[key] = None if value is None else int(value)
            elif key == "init_adapter":
                values[key] = None if value in (None, "") else str(value)
            elif key in ("method", "lr_scheduler"):
                values[key] = str(value)
            else:
                values[key] = type(getattr(cls, key))(value)  # int / float by the default's type
        if is_model_method(str(values.get("method", ""))) and "learning_rate" not in values:
            values["learning_rate"] = FULL_LEARNING_RATE
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total_steps: int
    epoch: float
    loss: float | None


@dataclass(frozen=True)
class TrainingResult:
    adapter_dir: Path
    steps: int
    final_loss: float | None
    loss_curve: list[tuple[int, float]]
    duration_s: float
    tokens_per_s: float
    peak_memory_mb: float
    base_model: str
    n_examples: int = 0
    n_truncated: int = 0
    resumed_from_step: int = 0
    train_tokens: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


def train_adapter(examples: Sequence[ChatExample], config: TrainingConfig, output_dir: Path, *,
                  on_progress: Callable[[TrainingProgress], None] | None = None,
                  checkpoint_dir: Path | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  settings: Settings | None = None,
                  init_adapter_dir: Path | None = None,
                  domain: str = "default") -> TrainingResult:
    """Train a LoRA adapter on ``examples`` and save it to ``output_dir`` (see module doc).

    ``init_adapter_dir``: a peft adapter folder whose weights training starts from (the job's
    ``init_adapter``, resolved by :mod:`services.finetune.warm_start`); ``config`` must carry
    its LoRA shape. ``domain``: whose prompt template the examples were rendered with (the
    job's evaluation domain), read back when they are re-encoded for the answer adapter."""
    if is_model_method(config.method):
        raise TrainingError(f"{config.method} trains all weights: use train_model")
    if config.method == "qlora":
        require_qlora()  # before any loading: a CPU worker refuses in milliseconds
    if not examples:
        raise TrainingError("no examples to train on")
    settings = settings or get_settings()
    started = time.perf_counter()

    import torch
    import transformers

    torch.set_num_threads(cpu_threads())
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    model, tokenizer, folder = _load_base(settings, config)
    card: dict[str, Any] | None = None
    if init_adapter_dir is not None and answers_on_compact_prompt(init_adapter_dir):
        usable, card = _answer_examples(model, tokenizer, examples, init_adapter_dir, domain)
        n_truncated = 0
    else:
        data = [tokenize_example(tokenizer, ex, config.max_seq_len) for ex in examples]
        usable = [item for item in data if item.n_target_tokens > 0]
        if not usable:
            raise TrainingError(f"every example's answer lies beyond max_seq_len="
                                f"{config.max_seq_len}; raise it")
        n_truncated = sum(item.truncated for item in data)
    model = (_with_lora(model, config, folder) if init_adapter_dir is None
             else _from_adapter(model, config, folder, init_adapter_dir))

    work = checkpoint_dir or Path(tempfile.mkdtemp(prefix="customllm-train-"))
    try:
        result = _run(model, tokenizer, folder, usable, config, output_dir, work,
                      keep_checkpoints=checkpoint_dir is not None, on_progress=on_progress,
                      should_stop=should_stop, settings=settings, started=started,
                      n_examples=len(examples), n_truncated=n_truncated)
    finally:
        if checkpoint_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if card is not None:  # serving reads it: this version answers on the compact prompt
        (output_dir / DATACARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        result.extra["answer_examples"] = card["examples"]
    return result


def _answer_examples(model: Any, tokenizer: Any, examples: Sequence[ChatExample],
                     init_adapter_dir: Path, domain: str
                     ) -> tuple[list[TokenizedExample], dict[str, Any]]:
    """The examples re-encoded as the answer adapter's own training data (see
    :mod:`services.finetune.answer_examples`), and the data card that makes the new version
    served the same way. Examples are read in the domain template's layout, else the default
    one's."""
    from services.common.generation.collector import eos_ids
    from services.common.prompting.prompts import load_template, template_for
    from services.finetune import answer_examples
    from services.finetune.answer_data import QUESTION_WORDS_INSIDE

    templates = {t.id: t for t in (template_for(domain), load_template("default"))}
    try:
        layouts = [answer_examples.layout_of(t) for t in templates.values()]
    except answer_examples.LayoutError as exc:
        raise TrainingError(f"cannot read examples for the answer adapter: {exc}") from exc
    kept = focus_sentences(init_adapter_dir)
    usable, counts = answer_examples.encode(examples, tokenizer, eos_ids(model, tokenizer),
                                            layouts, kept)
    if not usable:
        raise TrainingError(
            f"{init_adapter_dir.name} answers on the compact prompt, and none of the "
            f"{len(examples)} examples can be taught in it ({counts}): each needs the layout "
            f"of the template {' or '.join(templates)} and an answer that is its don't-know "
            "text or a span of one passage followed by its marker")
    log(logger, logging.INFO, "examples re-encoded for the compact prompt",
        templates=",".join(templates), **counts)
    return usable, {"prompt_version": PROMPT_VERSION, "no_answer": layouts[0].no_answer,
                    "template": layouts[0].template_id,
                    "constraint": {"question_words_inside": QUESTION_WORDS_INSIDE,
                                   "focus_sentences": kept},
                    "examples": counts}


def train_model(data: Sequence[ChatExample] | Sequence[str], config: TrainingConfig,
                output_dir: Path, *,
                on_progress: Callable[[TrainingProgress], None] | None = None,
                checkpoint_dir: Path | None = None,
                should_stop: Callable[[], bool] | None = None,
                settings: Settings | None = None) -> TrainingResult:
    """Train every weight of the base and save the whole model to ``output_dir``: chat
    examples for ``full``, plain texts for ``continued_pretraining`` (see module doc)."""
    if not is_model_method(config.method):
        raise TrainingError(f"train_model trains all weights (full, continued_pretraining), "
                            f"not {config.method}: use train_adapter")
    if not data:
        raise TrainingError("no examples to train on" if config.method == "full"
                            else "no texts to train on (the corpus policy allowed nothing)")
    settings = settings or get_settings()
    started = time.perf_counter()

    import torch
    import transformers

    torch.set_num_threads(cpu_threads())
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    loaded = model_store.load_model(settings.local_model_gguf or model_store.default_gguf_path(),
                                    settings.local_model_id, settings.model_cache_dir)
    model, tokenizer, folder = loaded.model, loaded.tokenizer, loaded.folder
    transformers.set_seed(config.seed)
    if config.method == "full":
        items = [tokenize_example(tokenizer, ex, config.max_seq_len)
                 for ex in data if isinstance(ex, ChatExample)]
        usable = [item for item in items if item.n_target_tokens > 0]
        n_truncated = sum(item.truncated for item in items)
        if not usable:
            raise TrainingError(f"every example's answer lies beyond max_seq_len="
                                f"{config.max_seq_len}; raise it")
    else:
        from services.finetune.corpus import pack

        texts = [str(t) for t in data]
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        usable = [TokenizedExample(input_ids=list(b), labels=list(b), truncated=False)
                  for b in pack(ids, config.max_seq_len, eos)]
        n_truncated = 0
        if not usable:
            raise TrainingError("the corpus holds no tokens to train on")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    steps = disk.planned_steps(len(usable), config.batch_size, config.grad_accum, config.epochs,
                               config.max_steps)
    disk.require_free_disk(
        checkpoint_dir or output_dir,
        disk.full_model_bytes_needed(weight_bytes, steps, config.save_steps,
                                     checkpointing=checkpoint_dir is not None),
        f"training every weight of {settings.local_model_id} ({steps} steps)")
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    work = checkpoint_dir or Path(tempfile.mkdtemp(prefix="customllm-train-"))
    try:
        result = _run(model, tokenizer, folder, usable, config, output_dir, work,
                      keep_checkpoints=checkpoint_dir is not None, on_progress=on_progress,
                      should_stop=should_stop, settings=settings, started=started,
                      n_examples=len(data), n_truncated=n_truncated)
    finally:
        if checkpoint_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    tokenizer.save_pretrained(str(output_dir))  # a self-contained model folder (vLLM, TGI)
    return result


def _load_base(settings: Settings, config: TrainingConfig) -> tuple[Any, Any, Path | None]:
    """The served base (float32); for QLoRA the cached folder re-loaded in 4-bit NF4."""
    gguf = settings.local_model_gguf or model_store.default_gguf_path()
    loaded = model_store.load_model(gguf, settings.local_model_id, settings.model_cache_dir)
    tokenizer = loaded.tokenizer
    if config.method == "lora":
        return loaded.model, tokenizer, loaded.folder

    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if loaded.folder is None:
        raise TrainingError("QLoRA loads the base from the converted-model cache, which could "
                            f"not be written under {settings.model_cache_dir}")
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16)
    folder = loaded.folder
    del loaded  # the float32 copy is not needed: the 4-bit one is loaded from its folder
    model = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=quantization, torch_dtype=torch.bfloat16, device_map={"": 0},
        local_files_only=True)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return model, tokenizer, folder


def _with_lora(model: Any, config: TrainingConfig, folder: Path | None) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    set_seed(config.seed)  # LoRA's A matrices are random: seed them
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in config.target_modules if m not in names]
    if missing:
        raise TrainingError(f"target_modules not in the model: {', '.join(missing)}")
    layers = None
    if config.lora_top_layers is not None:
        total = int(model.config.num_hidden_layers)
        layers = list(range(max(0, total - config.lora_top_layers), total))
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, bias="none", task_type="CAUSAL_LM",
                      target_modules=list(config.target_modules), layers_to_transform=layers)
    if folder is not None:
        # adapter_config.json names the base it was trained on: the converted safetensors
        # folder (loadable offline), not the GGUF's package folder the weights came from.
        lora.base_model_name_or_path = str(folder)
        model.config._name_or_path = str(folder)  # noqa: SLF001 - what peft records
        model.name_or_path = str(folder)  # set at load; peft reads it over the config
    return get_peft_model(model, lora)


def _from_adapter(model: Any, config: TrainingConfig, folder: Path | None,
                  adapter_dir: Path) -> Any:
    """The base with a registered adapter's LoRA weights, trainable, instead of fresh ones."""
    from peft import PeftModel
    from transformers import set_seed

    set_seed(config.seed)  # dropout
    total = int(model.config.num_hidden_layers)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
    lora = model.peft_config["default"]
    layers = lora.layers_to_transform
    chosen = sorted([layers] if isinstance(layers, int) else layers) if layers is not None \
        else list(range(total))
    expected = list(range(total - (config.lora_top_layers or total), total))
    if chosen != expected or lora.r != config.lora_r:
        raise TrainingError(f"{adapter_dir} adapts layers {chosen} at rank {lora.r}; the job "
                            f"expected layers {expected} at rank {config.lora_r}")
    if folder is not None:  # what the new adapter's config names as its base, as _with_lora
        lora.base_model_name_or_path = str(folder)
    return model


class _Collator:
    """Pads batches and counts the real (non-pad) tokens that went through training."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.tokens = 0

    def __call__(self, batch: Sequence[TokenizedExample]) -> dict[str, Any]:
        self.tokens += sum(len(item.input_ids) for item in batch)
        return pad_batch(batch, self.pad_id)


def _run(model: Any, tokenizer: Any, folder: Path | None, data: list[TokenizedExample],
         config: TrainingConfig, output_dir: Path, work: Path, *, keep_checkpoints: bool,
         on_progress: Callable[[TrainingProgress], None] | None,
         should_stop: Callable[[], bool] | None, settings: Settings, started: float,
         n_examples: int, n_truncated: int) -> TrainingResult:
    import torch
    from transformers import PrinterCallback, TrainerCallback, TrainingArguments

    _SftTrainer = _sft_trainer_class()  # noqa: N806 - a class
    cuda = torch.cuda.is_available()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
        tokenizer.eos_token_id or 0)
    collator = _Collator(pad_id)
    curve: list[tuple[int, float]] = []
    stopped = {"flag": False}

    class _Progress(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> Any:
            if should_stop is not None and should_stop():
                stopped["flag"] = True
                control.should_training_stop = True
                control.should_save = keep_checkpoints
            elif state.global_step >= state.max_steps:
                # The Trainer checkpoints the last step, but the result is saved right after
                # and nothing resumes from it: for a full model that checkpoint (weights and
                # AdamW state) is three times the model's size on disk.
                control.should_save = False
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **_: Any) -> Any:
            loss = (logs or {}).get("loss")
            if loss is not None:
                curve.append((state.global_step, float(loss)))
            if on_progress is not None and loss is not None:
                on_progress(TrainingProgress(state.global_step, state.max_steps,
                                             float(state.epoch or 0.0), float(loss)))
            return control

    work.mkdir(parents=True, exist_ok=True)
    resume = last_complete_checkpoint(work) if keep_checkpoints else None
    resumed_step = _checkpoint_step(resume)
    args = TrainingArguments(
        output_dir=str(work), num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay, seed=config.seed, data_seed=config.seed,
        logging_steps=1, logging_strategy="steps",
        save_strategy="steps" if keep_checkpoints else "no", save_steps=config.save_steps,
        save_total_limit=disk.CHECKPOINTS_KEPT, report_to="none", disable_tqdm=True,
        use_cpu=not cuda,
        bf16=cuda and config.method == "qlora", remove_unused_columns=False,
        dataloader_num_workers=0, dataloader_pin_memory=cuda,
        gradient_checkpointing=config.method == "qlora",
    )
    trainer = _SftTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                          callbacks=[_Progress()])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    log(logger, logging.INFO, "training started", method=config.method, examples=len(data),
        resume=resume, device="cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train_started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    train_s = time.perf_counter() - train_started
    step = trainer.state.global_step
    if stopped["flag"]:
        last = last_complete_checkpoint(work) if keep_checkpoints else None
        raise TrainingCancelled(step, Path(last) if last else None)

    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir), safe_serialization=True)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result = TrainingResult(
        adapter_dir=output_dir, steps=step, final_loss=curve[-1][1] if curve else None,
        loss_curve=curve, duration_s=time.perf_counter() - started,
        tokens_per_s=collator.tokens / train_s if train_s > 0 else 0.0,
        peak_memory_mb=round(peak, 1), base_model=settings.local_model_id,
        n_examples=n_examples, n_truncated=n_truncated, resumed_from_step=resumed_step,
        train_tokens=collator.tokens, device="cuda" if cuda else "cpu",
        extra={"train_s": round(train_s, 3), "base_folder": str(folder) if folder else None},
    )
    _write_manifest(output_dir, config, result)
    log(logger, logging.INFO, "training finished", steps=step, final_loss=result.final_loss,
        seconds=round(result.duration_s, 1), tokens_per_s=round(result.tokens_per_s, 1))
    return result


def _sft_trainer_class() -> type:
    """``Trainer`` whose loss projects only the target positions onto the vocabulary.

    The stock causal-LM loss computes logits for every position (batch × length × 49k vocab
    floats, most of the step's memory and a good part of its time on the CPU) and then ignores
    all but the answer's few tokens. Here the decoder's hidden states are gathered at the
    positions that predict a labelled token first, and only those go through the LM head: the
    same loss (mean cross-entropy over assistant tokens), a fraction of the cost.
    """
    import torch
    from transformers import Trainer

    class SftTrainer(Trainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            labels = inputs["labels"]
            causal = model.get_base_model() if hasattr(model, "get_base_model") else model
            hidden = causal.model(input_ids=inputs["input_ids"],
                                  attention_mask=inputs["attention_mask"],
                                  use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE_INDEX
            logits = causal.get_output_embeddings()(hidden[:, :-1][keep]).float()
            loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
            loss = loss / (num_items_in_batch if num_items_in_batch is not None
                           else keep.sum().clamp(min=1))
            return (loss, {"loss": loss}) if return_outputs else loss

    return SftTrainer


CHECKPOINT_COMPLETE = "trainer_state.json"  # the Trainer writes it last into a checkpoint


def last_complete_checkpoint(work: Path) -> str | None:
    """The newest ``checkpoint-N`` folder the Trainer finished writing; newer unfinished ones
    are deleted. Why not transformers' ``get_last_checkpoint``: it takes the highest N, and a
    worker killed while saving leaves a ``checkpoint-N`` without its trainer state, from which
    the next worker's resume failed (FileNotFoundError) instead of going on from the one before."""
    found = sorted(((_checkpoint_step(str(path)), path) for path in work.glob("checkpoint-*")
                    if path.is_dir()), reverse=True)
    for _, path in found:
        if _complete(path / CHECKPOINT_COMPLETE):
            return str(path)
        shutil.rmtree(path, ignore_errors=True)
    return None


def _complete(state: Path) -> bool:
    """The trainer state is there and whole (a kill during its own write leaves it cut)."""
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _checkpoint_step(path: str | None) -> int:
    if not path:
        return 0
    try:
        return int(Path(path).name.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def _write_manifest(output_dir: Path, config: TrainingConfig, result: TrainingResult) -> None:
    data = {
        "base_model": result.base_model, "config": config.as_dict(), "steps": result.steps,
        "final_loss": result.final_loss, "n_examples": result.n_examples,
        "n_truncated": result.n_truncated, "train_tokens": result.train_tokens,
        "duration_s": round(result.duration_s, 3), "device": result.device,
        "loss_curve": [[s, round(v, 6)] for s, v in result.loss_curve],
    }
    if math.isnan(result.final_loss or 0.0):
        data["final_loss"] = None
    (output_dir / MANIFEST).write_text(json.dumps(data, indent=2))
