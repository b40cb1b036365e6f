"""Run a test set through the real query path and store scored results.

For each case the runner sends two requests over Kafka (``ReplyClient``), both bypassing the
answer cache:

1. ``retrieval_only`` with ``top_k`` 10: the ranked documents the retriever finds (for hit@k,
   MRR, nDCG). The worker returns its *context items* (deduplicated, neighbours merged, cut at
   the context token budget), so fewer than 10 documents may come back.
2. the answering request with the run's adapter, prompt domain and ``top_k``, temperature 0.

The reply becomes a ``CaseResult`` (a timeout or an error reply becomes status ``error`` with
the reason, never an exception), is scored with ``metrics.score_case`` and upserted at once, so
an interrupted run resumes where it stopped: given an existing ``run_id`` the runner checks the
test set (hash and selected cases) and the measured configuration are the same, skips the
cases already stored (errors are retried) and recomputes the summary at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.engine import Engine

from services.common.config import get_settings
from services.common.evaluation import store
from services.common.evaluation.config import (
    DEFAULT_N_BOOT,
    DEFAULT_TIMEOUT_S,
    RETRIEVAL_TOP_K,
    TEMPERATURE,
    new_run_id,
    principal_for_credential,
)
from services.common.evaluation.metrics import is_abstention, score_case
from services.common.evaluation.models import CaseResult, CaseUsage, EvalCase, RunConfig
from services.common.evaluation.summary import summarize
from services.common.evaluation.testsets import testset_hash
from services.common.events import (
    Principal,
    RagFilters,
    RagOptions,
    RagReply,
    RagRequest,
)
from services.common.exceptions import CustomLLMError
from services.common.prompting.prompts import load_template
from services.common.rpc import ReplyClient, ReplyTimeout, new_request_id

Embed = Callable[[list[str]], np.ndarray]

# Settings that define *what* is measured: a resume must not mix two systems in one run.
SYSTEM_KEYS = ("testset_hash", "cases_hash", "domain", "adapter", "top_k", "max_tokens",
               "doc_id_prefix", "principal", "temperature", "retrieval_top_k")
# Recorded from the first reply: which system actually answered.
REPLY_KEYS = ("template_version", "backend", "model")


class EvalRunError(CustomLLMError):
    """A resume that would mix two test sets or two configurations in one run."""


async def run_eval(
    cases: Sequence[EvalCase],
    config: RunConfig,
    client: ReplyClient,
    engine: Engine,
    principal: Principal | None = None,
    concurrency: int = 4,
    run_id: str | None = None,
    progress: bool = True,
    embed: Embed | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    n_boot: int = DEFAULT_N_BOOT,
    console: Console | None = None,
) -> str:
    """Evaluate ``cases`` against the running stack; returns the run id (see module doc)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    cases = list(cases)
    # Recorded, not sent: who asks is the client's credential, verified by the input guardrail.
    principal = principal or principal_for_credential(
        get_settings(), getattr(client, "credential", None))
    no_answer = load_template(config.domain).no_answer
    run_config = _run_config(cases, config, principal, concurrency, timeout_s, n_boot,
                             no_answer)
    run_id, done, stored_config = _open_run(engine, run_id, config, run_config, len(cases))
    todo = [case for case in cases if case.id not in done]
    evaluator = _CaseEvaluator(client, run_id, config, principal, no_answer, timeout_s,
                               run_config.get("doc_id_prefix"), run_config.get("max_tokens"))
    semaphore = asyncio.Semaphore(concurrency)
    errors = 0
    recorded = {key: stored_config[key] for key in REPLY_KEYS if stored_config.get(key)}

    display = Progress(
        TextColumn("[bold]eval[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=console or Console(stderr=True), disable=not progress,
        transient=False)

    finishing: list[asyncio.Future[None]] = []

    async def one(case: EvalCase) -> None:
        async with semaphore:
            result, reply = await evaluator.evaluate(case)
        # Once the system has answered, scoring and storing finish even if the run is being
        # stopped: that work is paid for and a resume need not ask again.
        done = asyncio.ensure_future(record(result, reply))
        finishing.append(done)
        await asyncio.shield(done)

    async def record(result: CaseResult, reply: RagReply | None) -> None:
        nonlocal errors
        if reply is not None and len(recorded) < len(REPLY_KEYS):
            patch = {key: getattr(reply, key) for key in REPLY_KEYS
                     if key not in recorded and getattr(reply, key)}
            if patch:
                recorded.update(patch)
                await asyncio.to_thread(store.update_config, engine, run_id, patch)
        metrics = await asyncio.to_thread(score_case, result, embed, no_answer)
        await asyncio.to_thread(store.record_result, engine, result, metrics)
        if result.status == "error":
            errors += 1
        display.update(task, advance=1, errors=errors)

    with display:
        task = display.add_task(run_id, total=len(cases), completed=len(cases) - len(todo),
                                errors=0)
        tasks = [asyncio.create_task(one(case)) for case in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException as exc:
            # Stop the cases still in flight; a result already being written completes.
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*finishing, return_exceptions=True)
            await asyncio.to_thread(store.finish_run, engine, run_id,
                                    {"error": f"{type(exc).__name__}: {exc}"}, "failed")
            raise

    wanted = {case.id for case in cases}
    stored = [item for item in store.load_results(engine, run_id)
              if item.result.case_id in wanted]
    summary = summarize([item.metrics for item in stored], [item.result for item in stored],
                        n_boot=n_boot, seed=config.seed)
    store.finish_run(engine, run_id, summary)
    return run_id


def _run_config(cases: list[EvalCase], config: RunConfig, principal: Principal,
                concurrency: int, timeout_s: float, n_boot: int,
                no_answer: str) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    data.update({
        "cases_hash": testset_hash(cases), "cases_total": len(cases),
        "principal": principal.model_dump(mode="json"), "concurrency": concurrency,
        "timeout_s": timeout_s, "temperature": TEMPERATURE, "use_cache": False,
        "retrieval_top_k": RETRIEVAL_TOP_K, "no_answer": no_answer,
        "seeds": {"bootstrap": config.seed, "sampling": None},
        "n_boot": n_boot,
    })
    data.setdefault("doc_id_prefix", None)
    data.setdefault("max_tokens", None)
    return data


def _open_run(engine: Engine, run_id: str | None, config: RunConfig, run_config: dict[str, Any],
              total: int) -> tuple[str, set[str], dict[str, Any]]:
    """A new run, or an existing one to resume (checked): its id, the case ids it has done
    and its stored configuration."""
    existing = store.get_run(engine, run_id) if run_id else None
    if existing is None:
        run_id = run_id or new_run_id()
        store.create_run(engine, run_id, config.testset, config.testset_hash, run_config, total)
        return run_id, set(), run_config
    if existing.testset_hash != config.testset_hash:
        raise EvalRunError(
            f"run {run_id} measured test set {existing.testset} ({existing.testset_hash[:12]}), "
            f"not {config.testset} ({config.testset_hash[:12]}); start a new run instead")
    differing = [key for key in SYSTEM_KEYS
                 if existing.config.get(key) != run_config.get(key)]
    if differing:
        detail = ", ".join(f"{key}: {existing.config.get(key)!r} → {run_config.get(key)!r}"
                           for key in differing)
        raise EvalRunError(f"run {run_id} was started with other settings ({detail}); "
                           "resume it with the same options or start a new run")
    assert run_id is not None
    store.mark_running(engine, run_id, total)
    return run_id, store.completed_case_ids(engine, run_id), existing.config


class _CaseEvaluator:
    def __init__(self, client: ReplyClient, run_id: str, config: RunConfig,
                 principal: Principal, no_answer: str, timeout_s: float,
                 doc_id_prefix: str | None, max_tokens: int | None) -> None:
        self.client, self.run_id, self.config = client, run_id, config
        self.principal, self.no_answer, self.timeout_s = principal, no_answer, timeout_s
        self.filters = RagFilters(doc_id_prefix=doc_id_prefix) if doc_id_prefix \
            else RagFilters()
        self.max_tokens = max_tokens

    async def _ask(self, question: str, options: RagOptions) -> tuple[RagReply | None, str | None]:
        # Who asks is the client's credential, verified by the input guardrail; the run
        # records the principal it was expected to resolve to.
        request = RagRequest(request_id=new_request_id(), reply_to=self.client.reply_topic,
                             question=question, options=options)
        try:
            return await self.client.arequest(request, self.timeout_s), None
        except ReplyTimeout as exc:
            return None, f"timeout: {exc}"
        except CustomLLMError as exc:
            return None, f"{type(exc).__name__}: {exc}"

    async def evaluate(self, case: EvalCase) -> tuple[CaseResult, RagReply | None]:
        base = {"run_id": self.run_id, "case_id": case.id, "question": case.question,
                "expected": case.expected, "tags": list(case.tags), "answers": list(case.answers),
                "gold_doc_ids": list(case.gold_doc_ids)}
        retrieval, error = await self._ask(case.question, RagOptions(
            top_k=RETRIEVAL_TOP_K, retrieval_only=True, use_cache=False, filters=self.filters,
            domain=self.config.domain, temperature=TEMPERATURE))
        if retrieval is not None and retrieval.status == "error":
            error = f"retrieval error: {retrieval.error or 'no reason given'}"
        if error is not None:
            return CaseResult(**base, status="error", error=error), None
        assert retrieval is not None
        retrieved = _unique(c.doc_id for c in retrieval.citations)[:RETRIEVAL_TOP_K]

        started = time.perf_counter()
        reply, error = await self._ask(case.question, RagOptions(
            adapter=self.config.adapter, domain=self.config.domain, top_k=self.config.top_k,
            max_tokens=self.max_tokens, use_cache=False, filters=self.filters,
            temperature=TEMPERATURE))
        roundtrip_ms = round((time.perf_counter() - started) * 1000, 3)
        if reply is None:
            return CaseResult(**base, status="error", error=error,
                              retrieved_doc_ids=retrieved,
                              latency_ms={"roundtrip": roundtrip_ms}), None
        status = reply.status
        return CaseResult(
            **base,
            answer=reply.answer,
            status=status,
            abstained=status == "refused" or (
                status == "ok" and is_abstention(reply.answer, self.no_answer)),
            cited_doc_ids=_unique(c.doc_id for c in reply.citations),
            retrieved_doc_ids=retrieved,
            contexts=[c.text for c in reply.citations if c.text],
            guardrails=[d.model_dump(mode="json") for d in reply.guardrails],
            latency_ms={**reply.latency_ms, "roundtrip": roundtrip_ms},
            usage=CaseUsage(prompt_tokens=reply.usage.prompt_tokens,
                            completion_tokens=reply.usage.completion_tokens,
                            cost_usd=reply.usage.cost_usd),
            cached=reply.cached,
            error=(reply.error or "error reply") if status == "error" else None,
        ), reply


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))
