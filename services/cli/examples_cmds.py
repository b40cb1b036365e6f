"""`customllm examples ...`: the supervision set (import, review, snapshot, data card)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True,
                  help="The supervision set: import, review, snapshot, data card.")
