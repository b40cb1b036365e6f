"""`customllm guardrails ...`: check a text, replay past requests under a new policy, train the
injection classifier."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Guardrail checks, policies and their audit trail.")
