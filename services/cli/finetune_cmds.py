"""`customllm finetune|adapters ...`: fine-tuning jobs and the adapter registry."""

from __future__ import annotations

import typer

finetune_app = typer.Typer(
    no_args_is_help=True, help="Fine-tuning jobs on the finetune.requests queue.")
adapters_app = typer.Typer(
    no_args_is_help=True, help="The adapter registry: list, promote, retire.")
