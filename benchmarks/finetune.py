"""Fine-tuning benchmark: a LoRA adapter trained on the CPU vs the base model, held-out articles.

    .venv/bin/python -m benchmarks.finetune --squad ../shared/datasets/squad_v2_dev_5articles.json

The task is the platform's own answer format (services/finetune/taskdata.py): the RAG prompt
template over 2-3 numbered passages, answer ``<short answer> [n].`` or the template's exact
no-answer text when the gold passage is absent. Train and held-out examples come from different
SQuAD articles. Base and adapter answer the same held-out prompts with the same decoding
(chat template, greedy); the adapter is trained with the project's ``train_adapter`` and the run
is tracked in MLflow (local store in the run's state folder). Writes
docs/benchmarks/finetune.{json,md,png}.

``--methods lora,full,continued_pretraining`` instead compares the registry's methods on the
same task in the same run: LoRA and full fine-tuning train on the same examples, continued
pretraining on the knowledge set (every SQuAD passage of the file, no questions, as the job
reads the indexed chunks). Each method trains and answers in its own child process, so its
peak RSS is its own; the report gives cost (training time, peak RSS, artifact size) and
quality on the held-out prompts beside the base model's. Writes
docs/benchmarks/finetune_methods.{json,md}.

    .venv/bin/python -m benchmarks.finetune --squad ../shared/datasets/squad_v2_dev_5articles.json \
        --methods lora,full,continued_pretraining --train 32 --heldout 20 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

METRICS = ("format_compliance", "citation_accuracy", "exact_match", "token_f1",
           "abstention_accuracy", "false_abstention")


def _environment(state: Path | None) -> Path:
    """Before any project module reads its settings."""
    state = state or Path(tempfile.mkdtemp(prefix="customllm-bench-ft-"))
    os.environ.update({"CUSTOMLLM_STATE_DIR": str(state), "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "CUSTOMLLM_LOG_LEVEL": "WARNING"})
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD v2 JSON")
    parser.add_argument("--train", type=int, default=160, help="training examples")
    parser.add_argument("--heldout", type=int, default=40, help="held-out examples")
    parser.add_argument("--top-layers", type=int, default=10,
                        help="adapt only the top N decoder layers (0: all)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--state", type=Path, default=None, help="state folder (default: temp)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--methods", default="",
                        help="comma-separated methods to compare on the same task "
                        "(lora, full, continued_pretraining); default: the LoRA-vs-base report")
    parser.add_argument("--full-lr", type=float, default=5e-5,
                        help="learning rate of full fine-tuning and continued pretraining")
    parser.add_argument("--cpt-seq-len", type=int, default=256,
                        help="continued pretraining block length (tokens)")
    args = parser.parse_args()
    state = _environment(args.state)
    if args.methods:
        compare_methods(args, state)
        return
    results = run(args, state)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = report_markdown(results)
    (args.out / "finetune.md").write_text(markdown)
    write_chart(results, args.out / "finetune.png")
    print(markdown)  # noqa: T201 - the benchmark's report
    print(f"wrote {args.out}/finetune.json, .md, .png; MLflow store: {results['mlflow_uri']}")  # noqa: T201


def run(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from services.common import model_store
    from services.common.config import get_settings
    from services.finetune.hardware import cpu_threads
    from services.finetune.taskdata import TaskSpec, build_task
    from services.finetune.taskeval import generate, score_case, summarize
    from services.finetune.tracking import log_training, mlflow_run, tracking_uri
    from services.finetune.training import TrainingConfig, train_adapter

    torch.set_num_threads(cpu_threads())
    settings = get_settings()
    started = time.perf_counter()
    task = build_task(json.loads(args.squad.read_text()),
                      TaskSpec(n_train=args.train, n_heldout=args.heldout,
                                       window_words=40), squad_path=args.squad)
    print(f"task: {task.summary()}")  # noqa: T201
    loaded = model_store.load_model(settings.local_model_gguf or model_store.default_gguf_path(),
                                    settings.local_model_id, settings.model_cache_dir)

    def evaluate(model: Any, label: str) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
        replies, seconds = generate(model, loaded.tokenizer, task.heldout,
                                    max_new_tokens=args.max_new_tokens)
        scores = [score_case(c, r, task.no_answer) for c, r in zip(task.heldout_cases, replies,
                                                                   strict=True)]
        print(f"{label}: {summarize(scores)} ({seconds:.0f} s)")  # noqa: T201
        return summarize(scores), [s.__dict__ for s in scores], seconds

    base, base_cases, base_s = evaluate(loaded.model, "base")
    config = TrainingConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                            seed=args.seed, max_seq_len=768,
                            lora_top_layers=args.top_layers or None)

    def progress(p: Any) -> None:
        if p.step % 10 == 0 or p.step == p.total_steps:
            print(f"  step {p.step}/{p.total_steps} loss {p.loss:.4f}")  # noqa: T201

    params = {**config.as_dict(), "n_train": len(task.train), "n_heldout": len(task.heldout),
              "task": "cited-answers", "heldout_articles": ",".join(task.heldout_articles)}
    with mlflow_run("finetune-benchmark", "cited-answers", params,
                    {"base_model": settings.local_model_id}) as tracked:
        result = train_adapter(task.train, config, state / "adapters" / "cited-answers",
                               on_progress=progress)
        log_training(tracked, result)
        tuned = PeftModel.from_pretrained(loaded.model, str(result.adapter_dir))
        adapter, adapter_cases, adapter_s = evaluate(tuned, "adapter")
        tracked.log_metrics({f"base_{k}": v for k, v in base.items() if k in METRICS})
        tracked.log_metrics({f"heldout_{k}": v for k, v in adapter.items() if k in METRICS})
        run_id = tracked.run_id
    examples = [{"case_id": b["case_id"], "base": b["prediction"], "adapter": a["prediction"]}
                for b, a in list(zip(base_cases, adapter_cases, strict=True))[:8]]
    return {
        "task": task.summary(),
        "config": config.as_dict(),
        "base": base, "adapter": adapter,
        "training": {
            "steps": result.steps, "final_loss": result.final_loss,
            "loss_curve": result.loss_curve, "train_s": result.extra["train_s"],
            "duration_s": round(result.duration_s, 1), "tokens": result.train_tokens,
            "tokens_per_s": round(result.tokens_per_s, 1), "device": result.device,
        },
        "generation_s": {"base": round(base_s, 1), "adapter": round(adapter_s, 1)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "total_s": round(time.perf_counter() - started, 1),
        "examples": examples,
        "mlflow_uri": tracking_uri(settings), "mlflow_run_id": run_id,
        "machine": {"cpus": cpu_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
    }


# --- comparing methods ----------------------------------------------------------------------

METHODS = ("lora", "full", "continued_pretraining")


def compare_methods(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """Base once in this process, then each method in a fresh child process (see doc)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods: {', '.join(unknown)}; known: {', '.join(METHODS)}")
    started = time.perf_counter()
    results: dict[str, Any] = {"methods": {}, "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    context = multiprocessing.get_context("spawn")
    for method in ["base", *methods]:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            outcome = pool.submit(_method_run, method, vars(args), str(state)).result()
        results["methods"][method] = outcome
        print(f"{method}: {json.dumps(outcome['cost'])} {json.dumps(outcome['quality'])}")  # noqa: T201
        results.setdefault("task", outcome.get("task"))
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune_methods.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = methods_markdown(results)
    (args.out / "finetune_methods.md").write_text(markdown)
    print(markdown)  # noqa: T201 - the benchmark's report
    print(f"wrote {args.out}/finetune_methods.json, .md")  # noqa: T201
    return results


def _method_run(method: str, argv: dict[str, Any], state: str) -> dict[str, Any]:
    """One method in a child process: train (unless base), answer the held-out prompts,
    measure. Runs with the parent's environment (state folder, offline)."""
    _environment(Path(state))
    args = argparse.Namespace(**argv)
    import torch
    from peft import PeftModel

    from services.common import model_store
    from services.common.config import get_settings
    from services.finetune.hardware import cpu_threads
    from services.finetune.taskdata import TaskSpec, build_task
    from services.finetune.taskeval import generate, score_case, summarize
    from services.finetune.training import TrainingConfig, train_adapter, train_model

    torch.set_num_threads(cpu_threads())
    settings = get_settings()
    squad = json.loads(Path(args.squad).read_text())
    task = build_task(squad, TaskSpec(n_train=args.train, n_heldout=args.heldout,
                                      window_words=40), squad_path=Path(args.squad))
    loaded = model_store.load_model(settings.local_model_gguf or model_store.default_gguf_path(),
                                    settings.local_model_id, settings.model_cache_dir)
    out = Path(state) / "methods" / method
    training: dict[str, Any] = {}
    model = loaded.model
    if method != "base":
        common = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed}
        if method == "lora":
            config = TrainingConfig(**common, learning_rate=args.lr, max_seq_len=768,
                                    lora_top_layers=args.top_layers or None)
            result = train_adapter(task.train, config, out)
            model = PeftModel.from_pretrained(loaded.model, str(out))
        else:
            data: Any = task.train
            seq = 768
            if method == "continued_pretraining":
                data = [p["context"] for article in squad["data"]
                        for p in article["paragraphs"]]
                seq = args.cpt_seq_len
            config = TrainingConfig(**common, method=method, learning_rate=args.full_lr,
                                    max_seq_len=seq)
            result = train_model(data, config, out)
            del model
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
        model.eval()
        training = {"steps": result.steps, "final_loss": result.final_loss,
                    "train_s": result.extra["train_s"], "tokens": result.train_tokens,
                    "tokens_per_s": round(result.tokens_per_s, 1),
                    "n_examples": result.n_examples, "config": config.as_dict()}
    replies, seconds = generate(model, loaded.tokenizer, task.heldout,
                                max_new_tokens=args.max_new_tokens)
    scores = [score_case(c, r, task.no_answer)
              for c, r in zip(task.heldout_cases, replies, strict=True)]
    artifact = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) \
        if out.exists() else 0
    return {
        "quality": {k: v for k, v in summarize(scores).items() if k in METRICS},
        "cost": {"train_s": training.get("train_s", 0.0),
                 "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                 "artifact_mb": round(artifact / 2**20, 1), "generate_s": round(seconds, 1)},
        "training": training, "task": task.summary(),
        "examples": [{"case_id": c.case_id, "prediction": r}
                     for c, r in list(zip(task.heldout_cases, replies, strict=True))[:4]],
    }


def methods_markdown(results: dict[str, Any]) -> str:
    methods = results["methods"]
    names = list(methods)
    t = results.get("task") or {}
    lines = [
        "# Fine-tuning methods on one task: LoRA, full fine-tuning, continued pretraining", "",
        f"Task: cited answers from numbered passages; train {t.get('train')} examples, "
        f"held out {t.get('heldout')} ({t.get('heldout_abstain')} without the gold passage) "
        "from unseen articles. Continued pretraining reads every passage of the file (the "
        "knowledge set) without questions. Greedy decoding, the same prompts for all.", "",
        "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names),
    ]
    for key in METRICS:
        lines.append(f"| {key} | " + " | ".join(_fmt(methods[n]["quality"].get(key))
                                               for n in names) + " |")
    cost_rows = [("training s", "train_s", "{:.0f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
                 ("artifact MB", "artifact_mb", "{:.1f}"), ("answering s", "generate_s",
                                                             "{:.0f}")]
    for label, key, fmt in cost_rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(methods[n]["cost"][key])
                                                  for n in names) + " |")
    lines.append("| steps / final loss | " + " | ".join(
        f"{methods[n]['training']['steps']} / {methods[n]['training']['final_loss']:.3f}"
        if methods[n]["training"] else "–" for n in names) + " |")
    lines += ["", f"Whole run {results['total_s']:.0f} s on {results['machine']['cpus']} "
              "cores; peak RSS per method is its own process (base model, training, answering).",
              ""]
    return "\n".join(lines)


def report_markdown(results: dict[str, Any]) -> str:
    t, tr = results["task"], results["training"]
    lines = [
        "# Fine-tuning benchmark: cited answers from numbered passages",
        "",
        f"Train: {t['train']} examples from {', '.join(t['train_articles'])}; held out: "
        f"{t['heldout']} examples ({t['heldout_abstain']} without the gold passage) from "
        f"{', '.join(t['heldout_articles'])}. Greedy decoding, same prompts for both.",
        "",
        "| metric | base | LoRA adapter |",
        "|---|---:|---:|",
    ]
    for key in METRICS:
        b, a = results["base"].get(key), results["adapter"].get(key)
        lines.append(f"| {key} | {_fmt(b)} | {_fmt(a)} |")
    lines += [
        "",
        f"Training ({tr['device']}, {results['machine']['cpus']} cores): {tr['steps']} steps, "
        f"{tr['train_s']:.0f} s, {tr['tokens']} tokens, {tr['tokens_per_s']:.0f} tokens/s, "
        f"final loss {tr['final_loss']:.3f}; peak RSS {results['peak_rss_mb']:.0f} MB; "
        f"whole run {results['total_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def write_chart(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6))
    keys = [k for k in METRICS if results["base"].get(k) is not None]
    xs = range(len(keys))
    ax1.bar([x - 0.2 for x in xs], [results["base"][k] for k in keys], width=0.4,
            color="#999", label="base SmolLM2-135M-Instruct")
    ax1.bar([x + 0.2 for x in xs], [results["adapter"][k] for k in keys], width=0.4,
            color="#2a7ab9", label="+ LoRA adapter")
    ax1.set_xticks(list(xs), [k.replace("_", "\n") for k in keys], fontsize=8)
    ax1.set_ylim(0, 1)
    ax1.set_title(f"Held-out ({results['task']['heldout']} examples, unseen article)")
    ax1.legend()
    curve = results["training"]["loss_curve"]
    ax2.plot([s for s, _ in curve], [v for _, v in curve], color="#2a7ab9")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss (assistant tokens)")
    ax2.set_title(f"LoRA on CPU: {results['training']['steps']} steps, "
                  f"{results['training']['train_s']:.0f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
