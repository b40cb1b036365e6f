"""``customllm finetune policy``: what the retraining policy would decide now, and why.

The finetune worker only logs a decision not to queue (it checks every few seconds, and a
table of "still below the threshold" rows would be noise). A steward asking "why has nothing
retrained?" needs that answer on demand: this command reads the same ``CUSTOMLLM_FINETUNE_AUTO_*``
settings the worker reads, counts the same examples in Postgres and runs the same pure
:func:`services.finetune.auto_retrain.decide`, so it says exactly what the next check would do.
It changes nothing: queueing stays the worker's job.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import typer
from rich.table import Table

from services.cli.console import console
from services.cli.db import database
from services.finetune import auto_retrain
from services.finetune.config import finetune_settings


def policy(adapter: str | None = typer.Option(
        None, help="Ask about this adapter instead of CUSTOMLLM_FINETUNE_AUTO_ADAPTER.")) -> None:
    """Show the retraining policy, what it counts now, and whether the next check would queue."""
    settings = finetune_settings()
    rule = auto_retrain.RetrainPolicy.from_settings(settings)
    if adapter:
        rule = replace(rule, adapter=adapter)
    with database(("finetune_jobs", "sft_"), "fine-tuning") as engine:
        state = auto_retrain.loop_state(engine, rule)
    decision = auto_retrain.decide(rule, state, datetime.now(UTC))

    table = Table(show_header=False, box=None)
    table.add_row("policy", ("on" if rule.enabled else "off (CUSTOMLLM_FINETUNE_AUTO_ENABLED)")
                  + f": {rule.describe()}")
    table.add_row("new approved examples", str(state.new_examples))
    table.add_row("last automatic job", "none" if state.last_job_id is None else
                  f"{state.last_job_id} at {state.last_job_at:%Y-%m-%d %H:%M:%S %Z}")
    if state.live_job_id:
        table.add_row("unfinished automatic job", f"{state.live_job_id} ({state.live_status})")
    verdict = "[green]would queue[/]" if decision.queue else "[yellow]would wait[/]"
    table.add_row("next check", f"{verdict} ({decision.code}): {decision.reason}")
    console.print(table)
