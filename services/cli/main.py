"""The `customllm` command: one entry point, one module per command group."""

from __future__ import annotations

import typer

from services.cli import (
    ask,
    console_cmds,
    docs,
    eval_cmds,
    examples_cmds,
    finetune_cmds,
    guardrails_cmds,
    index_cmds,
    ops_cmds,
    publish,
    reconcile_cmd,
    retrain_cmd,
    security_cmds,
    source_cmds,
    stack_cmds,
    watch_cmd,
)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="customllm: domain LLM platform on Kafka + Postgres/pgvector.")
app.command("up")(stack_cmds.up)
app.command("down")(stack_cmds.down)
app.command("status")(stack_cmds.status)
app.command("migrate")(stack_cmds.migrate_cmd)
app.command("topics")(stack_cmds.topics_cmd)
app.command("publish")(publish.publish)
app.command("reconcile")(reconcile_cmd.reconcile)
app.command("watch")(watch_cmd.watch)
app.command("docs")(docs.docs)
app.command("ask")(ask.ask)
app.command("serve")(ask.serve)
app.command("console")(console_cmds.console)
app.command("doctor")(ops_cmds.doctor)
app.command("replay")(ops_cmds.replay)
app.add_typer(security_cmds.sources_app, name="sources")
app.add_typer(source_cmds.source_app, name="source")
app.add_typer(security_cmds.clients_app, name="clients")
app.add_typer(security_cmds.keys_app, name="keys")
app.add_typer(security_cmds.security_app, name="security")
app.add_typer(eval_cmds.app, name="eval")
app.add_typer(index_cmds.app, name="index")
app.add_typer(guardrails_cmds.app, name="guardrails")
app.add_typer(examples_cmds.app, name="examples")
finetune_cmds.finetune_app.command("policy")(retrain_cmd.policy)
app.add_typer(finetune_cmds.finetune_app, name="finetune")
app.add_typer(finetune_cmds.adapters_app, name="adapters")

if __name__ == "__main__":
    app()
