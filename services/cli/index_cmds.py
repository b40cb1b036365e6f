"""`customllm index`: change the embedding model without stopping anything.

* ``reindex --model ID [--path P]``: shadow re-index, every current chunk gets a vector for the
  model while the active one keeps serving; resumable (run it again after a crash or Ctrl-C).
* ``status``: per model, its state and how many chunks it covers.
* ``switch --model ID``: make it the model queries use, in one transaction; refused below 100%.
* ``retire --model ID``: stop writing a model that is no longer active and drop its vectors.
"""

from __future__ import annotations

import getpass
import os

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from services.cli.console import console
from services.cli.db import database, fail
from services.common import index_registry as registry
from services.common.embeddings import canonical_model_id, embedder_for
from services.common.reindex import reindex

app = typer.Typer(no_args_is_help=True, help="The embedding index: re-index, status, switch.")
TABLES = ("index_models", "chunk_embeddings", "index_switches")


@app.command("reindex")
def reindex_cmd(
    model: str = typer.Option(..., "--model", help="model id (e5, minilm or a full id)"),
    path: str | None = typer.Option(None, "--path", help="local model folder (not shipped)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, max=1024),
) -> None:
    """Embed every current chunk for MODEL beside the active model (shadow re-index)."""
    model_id = canonical_model_id(model)
    try:
        registry.checked_model_id(model_id)
        encoder = embedder_for(model_id, path)
        encoder.warm_up()
    except (ValueError, ImportError, OSError) as exc:
        raise fail(f"cannot load model {model_id}: {exc}") from exc
    with database(TABLES, "index") as engine, Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("chunks"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console) as progress:
        task = progress.add_task(f"re-indexing {model_id}", total=None)
        report = reindex(engine, encoder, batch_size, path,
                         on_progress=lambda done, total: progress.update(
                             task, completed=done, total=total))
    console.print(f"[green]{model_id}[/]: {report.embedded} chunks encoded, {report.reused} "
                  f"from the cache, state {report.state}"
                  + ("" if report.state == "active" else
                     f"; switch with `customllm index switch --model {model}`"))


@app.command("status")
def status_cmd() -> None:
    """Each model the index knows: state, coverage, index, and the last switches."""
    with database(TABLES, "index") as engine, engine.connect() as conn:
        rows = registry.coverage(conn)
        history = registry.switches(conn, 5)
    table = Table(title="embedding index")
    for column in ("model", "state", "chunks", "coverage", "hnsw index", "active since"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.model_id, row.state, f"{row.embedded}/{row.total}",
                      f"{100 * row.fraction:.1f}%", "ready" if row.index_ready else "missing",
                      "" if row.activated_at is None else
                      f"{row.activated_at:%Y-%m-%d %H:%M:%S} by {row.activated_by}")
    console.print(table)
    for item in history:
        console.print(f"switched {item[0]} → {item[1]} by {item[2]} at {item[3]:%Y-%m-%d %H:%M:%S}"
                      f" ({item[4]} chunks)")


@app.command("switch")
def switch_cmd(model: str = typer.Option(..., "--model", help="model id to make active"),
               by: str | None = typer.Option(None, "--by", help="who (default: $USER)")) -> None:
    """Make MODEL the one queries use; refused unless it covers every chunk."""
    model_id = canonical_model_id(model)
    who = by or os.environ.get("CUSTOMLLM_OPERATOR") or getpass.getuser()
    with database(TABLES, "index") as engine:
        try:
            with engine.begin() as conn:
                result = registry.switch(conn, model_id, who)
        except (registry.SwitchRefused, ValueError) as exc:
            raise fail(f"switch refused: {exc}", code=2) from exc
    console.print(f"[green]active model: {result.active}[/] (was {result.previous}; "
                  f"{result.chunks} chunks, by {who})")
    if result.previous != result.active:
        # Cosine scales differ between models (e5 puts unrelated texts near 0.7, MiniLM near
        # 0): thresholds set for one model do not carry over.
        console.print("[yellow]note:[/] CUSTOMLLM_MIN_RELEVANCE and "
                      "CUSTOMLLM_SEMANTIC_CACHE_THRESHOLD are cosine thresholds of the model "
                      "they were set for; check them for the new model.")


@app.command("retire")
def retire_cmd(model: str = typer.Option(..., "--model")) -> None:
    """Stop writing MODEL (not the active one) and drop its vectors."""
    model_id = canonical_model_id(model)
    with database(TABLES, "index") as engine:
        try:
            with engine.begin() as conn:
                dropped = registry.retire(conn, model_id)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {registry.index_name(model_id)}")
        except registry.SwitchRefused as exc:
            raise fail(f"retire refused: {exc}", code=2) from exc
    console.print(f"retired {model_id}: {dropped} vectors dropped")
