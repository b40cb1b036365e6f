"""`customllm ask` and `customllm serve`: the query path from the command line."""

from __future__ import annotations

import typer
from rich.table import Table

from services.cli.console import console
from services.common import identity, telemetry
from services.common.config import get_settings
from services.common.events import RagOptions, RagReply, RagRequest
from services.common.exceptions import CustomLLMError
from services.common.rpc import ReplyClient, new_request_id


def ask(
    question: str = typer.Argument(..., help="The question."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="CUSTOMLLM_API_KEY", help="Who asks: an API key or OIDC "
        "token; the platform derives the principal from it (default: the local operator key)."),
    adapter: str | None = typer.Option(None, help="LoRA adapter name (name@vN: that version)."),
    domain: str | None = typer.Option(None, help="Prompt domain (also picks the guardrail "
                                      "policy of that name)."),
    show_checks: bool = typer.Option(False, "--checks", help="List every guardrail decision, "
                                     "not only those that acted."),
    top_k: int | None = typer.Option(None, help="Chunks to retrieve."),
    retrieval_only: bool = typer.Option(False, help="Only show what would be cited."),
    no_cache: bool = typer.Option(False, help="Bypass the answer cache."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for the reply."),
) -> None:
    """Ask a question over Kafka request/reply; print the answer, citations and trace id."""
    settings = get_settings()
    credential = api_key or identity.own_credential(settings)
    if credential is None:
        console.print("[red]error:[/] no API key: pass --api-key, set CUSTOMLLM_API_KEY, or "
                      "run `customllm up` (it issues the local operator key)")
        raise typer.Exit(1)
    request = RagRequest(
        request_id=new_request_id(), reply_to="rag.replies.pending", question=question,
        options=RagOptions(adapter=adapter, top_k=top_k, retrieval_only=retrieval_only,
                           use_cache=not no_cache, domain=domain))
    telemetry.setup_tracing("customllm-cli", settings)
    try:
        client = ReplyClient(settings.kafka_bootstrap, client_id="customllm-ask",
                             credential=credential)
    except CustomLLMError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    try:
        with console.status("waiting for the answer..."), telemetry.tracer(__name__) \
                .start_as_current_span("ask", attributes={"request.id": request.request_id}):
            reply = client.request(request, timeout)
    except CustomLLMError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    finally:
        client.close()
        telemetry.shutdown_tracing()
    if reply.status == "error":
        console.print(f"[red]error:[/] {reply.error}")
        raise typer.Exit(1)
    if reply.status == "refused":
        console.print(f"[yellow]refused:[/] {reply.answer}")
        if reply.error:
            console.print(f"[dim]{reply.error}[/]")
    else:
        console.print(reply.answer or "[dim](no answer generated)[/]")
    _print_guardrails(reply, show_checks)
    table = Table("n", "document", "uri", "score")
    for citation in reply.citations:
        where = f" {citation.locator}" if citation.locator else ""  # "handbook.pdf p. 12"
        table.add_row(str(citation.n), (citation.title or citation.doc_id) + where,
                      citation.uri or "", f"{citation.score:.4f}")
    if reply.citations:
        console.print(table)
    stages = ", ".join(f"{k} {v:.0f} ms" for k, v in reply.latency_ms.items())
    served = ""
    if reply.adapter:
        version = reply.adapter_version or ""
        named = reply.adapter.endswith(f"@{version}") or not version
        served = f" · adapter {reply.adapter}" + ("" if named else f" ({version})")
    console.print(f"[dim]request {reply.request_id} · trace {reply.trace_id} · "
                  f"{'cached (' + str(reply.cache_kind) + ')' if reply.cached else 'fresh'} · "
                  f"{reply.usage.prompt_tokens}+{reply.usage.completion_tokens} tokens · "
                  f"template {reply.template_version}{served} · {stages}[/]")


def _print_guardrails(reply: RagReply, show_all: bool) -> None:
    """The decisions that changed something (redact, flag, block...), or all of them."""
    decisions = [d for d in reply.guardrails
                 if show_all or d.action not in ("allow", "skip")]
    if not decisions:
        return
    table = Table("stage", "check", "action", "score", "reason", title="guardrails")
    for d in decisions:
        table.add_row(d.stage, d.check, d.action, "" if d.score is None else f"{d.score:.3f}",
                      (d.reason or "")[:120])
    console.print(table)


def serve(
    host: str | None = typer.Option(None, help="Bind address (default from settings)."),
    port: int | None = typer.Option(None, help="Port (default from settings)."),
) -> None:
    """Run the gateway (the OpenAI-compatible API)."""
    from services.gateway.server import serve as run_gateway

    run_gateway(get_settings(), host, port)
