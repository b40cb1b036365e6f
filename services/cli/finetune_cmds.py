"""`customllm finetune|adapters ...`: fine-tuning jobs and the adapter registry.

    customllm finetune submit --adapter support --source tickets --testset eval.jsonl --follow
    customllm finetune status JOB_ID
    customllm adapters list
    customllm adapters promote support@v3
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import typer
import yaml
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.engine import Engine

from services.cli.console import console
from services.cli.db import database, fail
from services.common import kafka_auth
from services.common.config import get_settings
from services.common.events import (
    FinetuneDataset,
    FinetuneEvaluation,
    FinetuneEvent,
    FinetuneRequest,
)
from services.common.exceptions import CustomLLMError
from services.common.topics import FINETUNE_EVENTS, FINETUNE_REQUESTS

METHODS: tuple[str, ...] = get_args(FinetuneRequest.model_fields["method"].annotation)

finetune_app = typer.Typer(
    no_args_is_help=True, help="Fine-tuning jobs on the finetune.requests queue.")
adapters_app = typer.Typer(
    no_args_is_help=True, help="The adapter registry: list, promote, retire.")

TERMINAL = {"completed", "failed", "cancelled"}




def _database(error_code: int = 1) -> AbstractContextManager[Engine]:
    return database(('finetune_jobs', 'adapters'), "fine-tuning", error_code)


def new_job_id() -> str:
    return f"ft-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _hyperparameters(config: Path | None, overrides: list[str],
                     init_from: str | None = None) -> dict[str, Any]:
    """A YAML file (flat, or under ``hyperparameters:``) with ``--set key=value`` on top, then
    ``--from``."""
    hp: dict[str, Any] = {}
    if config is not None:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and isinstance(data.get("hyperparameters"), dict):
            data = data["hyperparameters"]
        if not isinstance(data, dict):
            raise fail(f"{config}: expected a mapping of hyperparameters")
        hp.update(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--set {item!r}: expected KEY=VALUE")
        hp[key.strip()] = yaml.safe_load(value)
    if init_from is not None:
        hp["init_adapter"] = init_from
    return hp


def _evaluation(testset: Path | None, tolerances: Path | None, limit: int | None,
                domain: str, doc_prefix: str | None, max_tokens: int | None
                ) -> FinetuneEvaluation | None:
    """The gate's test set travels inline in the request, so the worker needs no shared disk."""
    if testset is None:
        return None
    from services.common.evaluation.testsets import TestSetError, read_jsonl

    try:
        cases = read_jsonl(testset)
    except TestSetError as exc:
        raise fail(str(exc)) from exc
    limits: dict[str, Any] = {}
    if tolerances is not None:
        data = yaml.safe_load(tolerances.read_text(encoding="utf-8")) or {}
        limits = data.get("tolerances", data) if isinstance(data, dict) else {}
    return FinetuneEvaluation(cases=[c.model_dump(mode="json") for c in cases],
                              tolerances=limits, limit=limit, domain=domain,
                              doc_id_prefix=doc_prefix, max_tokens=max_tokens)


def _publish(request: FinetuneRequest) -> None:
    from services.common.producer import flush, make_producer, send

    producer, errors = make_producer(get_settings().kafka_bootstrap, "customllm-finetune-cli"), []
    send(producer, FINETUNE_REQUESTS, request.job_id, request.to_json(), errors=errors)
    flush(producer, errors, timeout_s=30)


@finetune_app.command("submit")
def submit(
    adapter: str = typer.Option(..., "--adapter", help="Adapter name (each job registers its "
                                "next version)."),
    snapshot: str | None = typer.Option(None, help="Train on this supervision snapshot."),
    source: list[str] = typer.Option([], "--source", help="Or snapshot the approved examples "
                                     "of this source now (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="... with this tag (repeatable)."),
    max_privacy: str | None = typer.Option(None, help="... up to this privacy class."),
    method: str = typer.Option("lora", help="lora | qlora (QLoRA needs a CUDA GPU) | full "
                               "(all weights, small models) | continued_pretraining (causal "
                               "LM on the knowledge set's chunks the job may train on)."),
    license_: list[str] = typer.Option([], "--license", help="continued_pretraining: a "
                                       "licence that may be trained on (repeatable; default: "
                                       "the worker's trainable set)."),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="YAML of hyperparameters (TrainingConfig fields)."),
    set_: list[str] = typer.Option([], "--set", help="Hyperparameter KEY=VALUE (repeatable), "
                                   "e.g. --set max_steps=50 --set lora_r=8."),
    init_from: str | None = typer.Option(None, "--from", help="LoRA: start from this "
                                         "registered adapter's weights (NAME or NAME@vN), e.g. "
                                         "the shipped `answers`; its LoRA shape is kept "
                                         "(hyperparameter init_adapter)."),
    testset: Path | None = typer.Option(None, "--testset", exists=True, dir_okay=False,
                                        help="Evaluation test set (JSONL) of the promotion "
                                        "gate; without one the adapter stays a candidate."),
    tolerances: Path | None = typer.Option(None, "--tolerances", exists=True, dir_okay=False,
                                           help="Gate tolerances (YAML, as `eval gate`)."),
    eval_limit: int | None = typer.Option(None, min=1, help="Evaluate a sample of N cases."),
    domain: str = typer.Option("default", help="Prompt domain of the evaluation."),
    doc_prefix: str | None = typer.Option(None, help="Evaluation retrieves only these doc ids."),
    eval_max_tokens: int | None = typer.Option(None, min=1, help="Answer length in the gate."),
    promote: bool = typer.Option(True, help="Promote when the gate passes."),
    job_id: str | None = typer.Option(None, "--job-id", help="Job id (default: generated); "
                                      "submitting the same id twice runs the job once."),
    base_model: str | None = typer.Option(None, help="Must be the served base (default)."),
    follow: bool = typer.Option(False, "--follow", help="Show progress until the job ends."),
    timeout: float = typer.Option(6 * 3600.0, help="--follow gives up after this many s."),
) -> None:
    """Queue a fine-tuning job (LoRA, QLoRA, full or continued pretraining) on
    finetune.requests; the result is the adapter's (or model's) next version."""
    if method not in METHODS:
        raise fail(f"--method must be one of {', '.join(METHODS)}", 2)
    dataset = FinetuneDataset(snapshot_id=snapshot, sources=list(source), tags=list(tag),
                              max_privacy=max_privacy,  # type: ignore[arg-type]
                              licenses=list(license_) or None)
    try:
        request = FinetuneRequest(
            job_id=job_id or new_job_id(), adapter_name=adapter, base_model=base_model,
            method=method,  # type: ignore[arg-type]
            dataset=dataset, hyperparameters=_hyperparameters(config, set_, init_from),
            evaluation=_evaluation(testset, tolerances, eval_limit, domain, doc_prefix,
                                   eval_max_tokens),
            promote="gate" if promote else "never", requested_by="cli")
        from services.finetune.handlers import submit_problems

        problems = submit_problems(request, get_settings().local_model_id)
        if problems:
            raise fail("; ".join(problems), 2)
        follower = EventFollower(request.job_id) if follow else None
        _publish(request)
    except CustomLLMError as exc:
        raise fail(str(exc)) from exc
    console.print(f"queued job [bold]{request.job_id}[/] ({method}, adapter {adapter})")
    if follower is not None:
        code = follower.follow(timeout)
        raise typer.Exit(code)


class EventFollower:
    """Reads finetune.events for one job from the moment it is created (before the request is
    sent, so no event is missed) and draws a progress bar with the loss."""

    def __init__(self, job_id: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.job_id = job_id
        self.consumer = Consumer({**kafka_auth.client_config(get_settings().kafka_bootstrap),
                                  "group.id": kafka_auth.private_group_id("follow"),
                                  "enable.auto.commit": False})
        topic = self.consumer.list_topics(FINETUNE_EVENTS, timeout=10).topics[FINETUNE_EVENTS]
        assigned = []
        for p in topic.partitions:
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(FINETUNE_EVENTS, p), timeout=10)
            assigned.append(TopicPartition(FINETUNE_EVENTS, p, high))
        self.consumer.assign(assigned)

    def events(self, timeout_s: float) -> Iterator[FinetuneEvent]:
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                message = self.consumer.poll(0.5)
                if message is None or message.error() or message.value() is None:
                    continue
                if (message.key() or b"").decode("utf-8", "replace") != self.job_id:
                    continue
                yield FinetuneEvent.model_validate_json(message.value())
        finally:
            self.consumer.close()

    def follow(self, timeout_s: float) -> int:
        columns = (TextColumn("[bold]{task.fields[status]}[/]"), BarColumn(),
                   MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(self.job_id, total=None, status="queued", loss="–")
            for event in self.events(timeout_s):
                loss = (event.progress or {}).get("loss")
                update: dict[str, Any] = {"status": event.status}
                if loss is not None:
                    update["loss"] = f"{loss:.4f}"
                if event.progress and event.progress.get("max_steps"):
                    update.update(total=event.progress["max_steps"],
                                  completed=event.progress.get("step", 0))
                progress.update(task, **update)
                if event.message and (event.status != "running" or event.progress is None):
                    progress.console.print(f"[dim]{event.status}: {event.message}[/]")
                if event.status in TERMINAL:
                    return _report_end(event)
        console.print(f"[yellow]still running after {timeout_s:.0f}s[/]; "
                      f"`customllm finetune status {self.job_id}` shows it later")
        return 3


def _report_end(event: FinetuneEvent) -> int:
    if event.status == "completed":
        gate = event.gate or {}
        console.print(f"[green bold]completed[/]: {event.adapter_name}@{event.adapter_version} "
                      + ("[green]promoted[/]" if event.promoted else "left as candidate")
                      + (f" — gate {gate.get('reason')}" if gate.get("reason") else ""))
        return 0
    console.print(f"[red bold]{event.status}[/]: {event.error or event.message or ''}")
    return 1


@finetune_app.command("status")
def status(job_id: str = typer.Argument(..., help="Job id.")) -> None:
    """A job's state, progress, result or failure reason."""
    from services.finetune import jobs

    with _database() as engine:
        job = jobs.get_job(engine, job_id)
    if job is None:
        raise fail(f"no job {job_id}")
    table = Table("field", "value", title=f"job {job.job_id}", show_header=False)
    progress = job.progress or {}
    rows = [
        ("status", job.status), ("adapter", job.adapter_name
                                 + (f"@v{job.adapter_version}" if job.adapter_version else "")),
        ("method", job.request.method), ("attempt", str(job.attempt)),
        ("worker", job.worker_id or "–"),
        ("progress", f"step {progress.get('step', 0)}/{progress.get('max_steps', '?')}, "
                     f"loss {progress.get('loss', '–')}" if progress else "–"),
        ("heartbeat", str(job.heartbeat_at or "–")), ("created", str(job.created_at)),
        ("finished", str(job.finished_at or "–")), ("mlflow run", job.mlflow_run_id or "–"),
        ("cancel requested", str(job.cancel_requested)),
    ]
    gate = job.result.get("gate") or {}
    if gate:
        rows.append(("gate", ("passed: " if gate.get("passed") else "failed: ")
                     + str(gate.get("reason", ""))[:300]))
    if job.error:
        rows.append(("error", job.error))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if job.status == "failed":
        raise typer.Exit(1)


@finetune_app.command("cancel")
def cancel(job_id: str = typer.Argument(..., help="Job id."),
           reason: str | None = typer.Option(None, help="Why (kept on the job).")) -> None:
    """Cancel a job: a queued one never starts, a running one stops at its next step."""
    try:
        _publish(FinetuneRequest(action="cancel", job_id=job_id, reason=reason,
                                 requested_by="cli"))
    except CustomLLMError as exc:
        raise fail(str(exc)) from exc
    console.print(f"cancel requested for job {job_id}; `customllm finetune status {job_id}` "
                  "shows when it took effect")


@finetune_app.command("list")
def list_jobs(limit: int = typer.Option(30, min=1, help="At most this many jobs."),
              state: str | None = typer.Option(None, "--status", help="Only jobs in this "
                                               "state.")) -> None:
    """Jobs, newest first."""
    from services.finetune import jobs

    with _database() as engine:
        found = jobs.list_jobs(engine, limit, state)
    table = Table("job", "status", "adapter", "method", "attempt", "step", "loss", "created",
                  "error")
    for job in found:
        progress = job.progress or {}
        table.add_row(job.job_id, job.status, job.adapter_name
                      + (f"@v{job.adapter_version}" if job.adapter_version else ""),
                      job.request.method, str(job.attempt),
                      f"{progress.get('step', '–')}/{progress.get('max_steps', '–')}",
                      str(progress.get("loss", "–")), job.created_at.strftime("%Y-%m-%d %H:%M"),
                      (job.error or "")[:60])
    console.print(table)
    if not found:
        console.print("no fine-tuning jobs yet: `customllm finetune submit --adapter NAME ...`")


# --- adapters ---------------------------------------------------------------------------------

def _ref(text: str, need_version: bool = False) -> Any:
    from services.finetune.handlers import FinetuneError, parse_ref

    try:
        ref = parse_ref(text)
    except FinetuneError as exc:
        raise fail(str(exc), 2) from exc
    if need_version and ref.version is None:
        raise fail(f"name the version: {ref.name}@vN (`customllm adapters list` shows them)", 2)
    return ref


def _adapters_dir() -> Path:
    from services.finetune.config import finetune_config

    return finetune_config(get_settings()).adapters_dir


@adapters_app.command("list")
def adapters_list(name: str | None = typer.Argument(None, help="Only this adapter."),
                  retired: bool = typer.Option(True, help="Include retired versions.")) -> None:
    """Registered adapter versions with their status and gate result."""
    from services.finetune import registry

    with _database() as engine:
        versions = registry.list_versions(engine, name, include_retired=retired)
    table = Table("adapter", "status", "base model", "method", "job", "gate", "loss",
                  "created", "promoted")
    for v in versions:
        gate = v.gate or {}
        verdict = "–" if not gate else ("passed" if gate.get("passed") else "failed")
        colour = {"promoted": "green", "retired": "dim"}.get(v.status, "yellow")
        table.add_row(v.ref, f"[{colour}]{v.status}[/]", v.base_model, v.method,
                      v.job_id or "–", verdict, str(v.metrics.get("final_loss", "–"))[:8],
                      v.created_at.strftime("%Y-%m-%d %H:%M"),
                      v.promoted_at.strftime("%Y-%m-%d %H:%M") if v.promoted_at else "–")
    console.print(table)
    if not versions:
        console.print("no adapters registered yet")


def _actor(reason: str | None) -> str | None:
    """Who decides, when a reason says why: the local user, marked as coming from the CLI."""
    import getpass

    return f"cli:{getpass.getuser()}" if reason else None


@adapters_app.command("promote")
def adapters_promote(
    ref: str = typer.Argument(..., help="NAME@vN to serve as NAME."),
    reason: str | None = typer.Option(None, help="Why (recorded with your user name, as the "
                                      "web console records its promotions)."),
) -> None:
    """Serve this version as NAME now (manual promotion; the gate is not re-run)."""
    from services.finetune import registry

    target = _ref(ref, need_version=True)
    with _database() as engine:
        version = registry.promote(engine, target.name, target.version, _adapters_dir(),
                                   actor=_actor(reason), reason=reason)
    gate = version.gate or {}
    if gate and not gate.get("passed"):
        console.print(f"[yellow]note:[/] its gate had failed: {gate.get('reason', '')[:300]}")
    console.print(f"[green]promoted[/] {version.ref}: `{version.name}` serves it from the next "
                  "request on")


@adapters_app.command("retire")
def adapters_retire(
    ref: str = typer.Argument(..., help="NAME@vN to take out of use."),
    reason: str | None = typer.Option(None, help="Why (recorded with your user name)."),
) -> None:
    """Retire a version (retiring the promoted one stops serving NAME)."""
    from services.finetune import registry

    target = _ref(ref, need_version=True)
    with _database() as engine:
        version = registry.retire(engine, target.name, target.version, _adapters_dir(),
                                  actor=_actor(reason), reason=reason)
    console.print(f"retired {version.ref}")


@adapters_app.command("show")
def adapters_show(ref: str = typer.Argument(..., help="NAME (promoted or newest) or NAME@vN."),
                  raw: bool = typer.Option(False, help="Print the card's Markdown source.")
                  ) -> None:
    """The adapter card, and the lines vLLM, TGI and LoRAX need to serve it."""
    from services.finetune import cards, registry

    target = _ref(ref)
    with _database() as engine:
        version = registry.get(engine, target.name, target.version)
    if version is None:
        raise fail(f"no adapter {ref} in the registry")
    if raw:
        typer.echo(version.card_markdown)
        return
    console.print(Markdown(version.card_markdown or f"# {version.ref}\n\n(no card yet)"))
    # Plain echo, not rich: these lines are copied into shells and must never wrap.
    for stack, line in cards.serving_lines(version.ref, version.name, version.path,
                                           version.base_model, version.kind).items():
        typer.echo(f"# {stack}\n{line}")


def _distractors(value: str | None) -> str | None:
    from services.finetune.answer_data import DISTRACTORS

    if value is not None and value not in DISTRACTORS:
        raise typer.BadParameter(f"{value!r}: one of {', '.join(DISTRACTORS)}")
    return value


@finetune_app.command("build-default")
def build_default(
    squad: Path = typer.Option(..., "--squad", exists=True, dir_okay=False,
                               help="SQuAD 1.1 file (squad_v11_train_11articles.json)."),
    squad2: Path = typer.Option(..., "--squad2", exists=True, dir_okay=False,
                                help="SQuAD 2.0 file (squad_v2_dev_5articles.json)."),
    out: Path | None = typer.Option(None, help="Folder to write (default: the shipped one)."),
    stop_after: int | None = typer.Option(
        None, "--stop-after", min=1,
        help="Stop after this many steps (a slow machine); the schedule still spans the epoch."),
    focus_sentences: int | None = typer.Option(
        None, "--focus-sentences", min=1,
        help="Sentences about the question kept in the prompt (default: the recipe's)."),
    distractors: str | None = typer.Option(
        None, "--distractors", callback=_distractors,
        help="The other two passages: random paragraphs of the article, or the nearest by "
             "BM25 (default: the recipe's)."),
) -> None:
    """Rebuild the shipped answer adapter (data, seeded LoRA training, data card); then run
    `python -m benchmarks.answers ... --previous-adapter <a copy of the old one> --gate` to
    measure it and write its gate."""
    from services.finetune import default_adapter
    from services.finetune.answer_data import DataSpec

    target = out or default_adapter.SHIPPED_DIR / default_adapter.ADAPTER_NAME
    chosen = {k: v for k, v in (("focus_sentences", focus_sentences),
                                ("distractors", distractors)) if v is not None}
    spec = DataSpec(**chosen)
    card = default_adapter.build_default(target, squad, squad2, stop_after=stop_after,
                                         spec=spec)
    console.print(f"built {target}: {card['counts']['total']} examples, "
                  f"{card['training']['steps']} steps, final loss "
                  f"{card['training']['final_loss']}")
