"""The output stage: a draft answer → checks → the reply the requester may see.

Order matters: the canary is checked on the raw answer (before redaction could hide it),
citations against the draft's evidence, PII redaction next (so toxicity, hate and the final
text see the redacted answer), grounding on the raw answer (redaction tags would not match the
context).
Abstentions and error drafts assert nothing and skip the answer checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from opentelemetry import trace

from services.common.events import Citation, Decision, RagReply, RetrievedChunk
from services.common.linear_head import LinearHead, head_path
from services.guardrails import hate
from services.guardrails.checks.canary import check_canary
from services.guardrails.checks.citations import check_citations, without_invalid
from services.guardrails.checks.grounding import Ask, check_grounding
from services.guardrails.checks.hate import check_hate
from services.guardrails.checks.output_pii import FindPii, redact_output, with_policy_patterns
from services.guardrails.checks.results import CheckResult, StageVerdict
from services.guardrails.config import JUDGE_MAX_TOKENS, JUDGE_TIMEOUT_S
from services.guardrails.policy import CheckPolicy, Policy
from services.guardrails.stored_pii import StoredDetector, joined_citations

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from services.common.config import Settings

Embed = Callable[[list[str]], np.ndarray]


@dataclass
class OutputDeps:
    """What the checks call: embeddings (grounding, the hate head), the PII detector, the
    toxicity scorer, the hate head and an optional judge (``ask(prompt) -> reply``); all
    swappable in tests. ``pii_store``: the database holding the PII findings stored per chunk text
    (``services.common.pii_findings``); without it every cited text is analysed."""

    embed: Embed | None
    find_pii: FindPii
    toxicity: Callable[[str], float] | None = None
    hate_head: LinearHead | None = None
    judge: Ask | None = None
    no_answer_for: Callable[[str | None], str | None] = field(default=lambda _t: None)
    pii_store: Engine | None = None


def load_output_deps(settings: Settings, loop: asyncio.AbstractEventLoop | None = None,
                     embed: Embed | None = None,
                     stored_findings: bool | None = None) -> OutputDeps:
    """The real detectors, loaded lazily (``warm_up`` loads them before the first draft). The
    judge goes through the configured generation backend, built only when first needed: on
    ``loop`` when the caller runs one (the service: checks run in worker threads), else on a
    loop of its own (the replay CLI). ``stored_findings`` (default: the
    ``CUSTOMLLM_GUARDRAILS_PII_FINDINGS_LOOKUP`` setting) looks cited chunks' PII up in the
    database instead of analysing them again."""
    from services.common.db import make_engine
    from services.common.embeddings import embedder_from_settings
    from services.common.pii import find_pii
    from services.guardrails.checks.toxicity import toxicity_score
    from services.guardrails.config import guardrails_settings

    if stored_findings is None:
        stored_findings = guardrails_settings().guardrails_pii_findings_lookup
    store = make_engine(settings.sqlalchemy_url, pool_size=4) if stored_findings else None

    embed = embed or embedder_from_settings(settings).encode
    backend: list[Any] = []

    def judge(prompt: str) -> str:
        from services.common.generation.base import GenerationRequest
        from services.common.generation.factory import backend_from_settings

        if not backend:
            backend.append(backend_from_settings(settings))
            backend[0].warm_up()
        request = GenerationRequest(messages=[{"role": "user", "content": prompt}],
                                    max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
        if loop is None:
            return asyncio.run(asyncio.wait_for(backend[0].generate(request),
                                                JUDGE_TIMEOUT_S)).text
        future = asyncio.run_coroutine_threadsafe(backend[0].generate(request), loop)
        return future.result(JUDGE_TIMEOUT_S).text

    hate_head = hate.load_cached(head_path(None, settings.state_path, hate.MODEL_FILE,
                                           hate.PACKAGED_MODEL))
    return OutputDeps(embed=embed, find_pii=find_pii, toxicity=toxicity_score,
                      hate_head=hate_head, judge=judge, no_answer_for=no_answer_for,
                      pii_store=store)


def warm_up(deps: OutputDeps) -> None:
    """Pay the model loads (MiniLM, Presidio, the toxicity model) before the first draft."""
    if deps.embed is not None:
        deps.embed(["warm up"])
    deps.find_pii("warm up")
    if deps.toxicity is not None:
        deps.toxicity("warm up")


def no_answer_for(template_version: str | None) -> str | None:
    """The abstention text of the template that produced the draft (``default/v1``)."""
    from services.common.prompting.prompts import TemplateError, load_template

    if not template_version or "/" not in template_version:
        return None
    domain, _, version = template_version.partition("/")
    try:
        return load_template(domain, version).no_answer
    except TemplateError:
        return None


def check_toxicity(answer: str, score_fn: Callable[[str], float] | None,
                   policy: CheckPolicy) -> CheckResult:
    if not policy.enabled:
        return CheckResult("toxicity", None, False, "skip", "disabled by policy")
    if score_fn is None:
        return CheckResult("toxicity", None, False, "skip", "no toxicity model loaded")
    score = float(score_fn(answer)) if answer.strip() else 0.0
    if score < policy.threshold:
        return CheckResult("toxicity", score, False, "allow")
    return CheckResult("toxicity", score, True, policy.action,
                       f"toxicity {score:.2f} ≥ {policy.threshold:.2f}")


def screen_output(draft: RagReply, policy: Policy, deps: OutputDeps) -> StageVerdict:
    """Every output check on one draft; ``verdict.text`` is the answer the reader gets."""
    version = policy.policy_version
    if draft.status != "ok":
        return StageVerdict("output", version, draft.answer, ())
    evidence = draft.evidence
    retrieved: list[RetrievedChunk] = list(evidence.retrieved) if evidence else []
    canary = evidence.screening.canary if evidence and evidence.screening else None
    clearance = evidence.principal.clearance if evidence else "public"
    out = policy.output
    citations_result = check_citations(draft.answer, draft.citations, retrieved, out.citations)
    results = [check_canary(draft.answer, canary, out.canary), citations_result]
    answer, citations = draft.answer, list(draft.citations)
    if citations_result.triggered and citations_result.action == "redact":
        answer, citations = without_invalid(answer, citations, retrieved)
    find, stored = _pii_detector(deps, out.pii.enabled, out.pii.min_score,
                                 [c.text for c in retrieved] + [c.text for c in citations],
                                 joined_citations(citations, {c.chunk_id: c.text
                                                              for c in retrieved if c.text}))
    pii = redact_output(answer, citations, retrieved, clearance, out.pii,
                        with_policy_patterns(find, out.pii))
    if stored is not None:
        stored.flush()
        trace.get_current_span().set_attributes(stored.stats.attributes())
    pii_result = CheckResult(pii.result.check, pii.result.score, pii.result.triggered,
                             pii.result.action, pii.result.reason,
                             {**pii.result.details, "citations": pii.citations})
    results.append(pii_result)
    results.append(check_toxicity(pii.answer, deps.toxicity, out.toxicity))
    hate_head = hate.load_cached(Path(out.hate.model)) if out.hate.model else deps.hate_head
    results.append(check_hate(pii.answer, out.hate, hate_head, deps.embed))
    results.append(check_grounding(answer, _cited_context(citations, retrieved),
                                   out.grounding, deps.embed,
                                   deps.no_answer_for(draft.template_version), deps.judge))
    verdict = StageVerdict("output", version, pii.answer, tuple(results))
    if verdict.blocked:
        text = policy.refusal_message
    elif any(r.triggered and r.action == "replace" for r in results):
        text = out.grounding.replacement_message
    else:
        text = pii.answer
    return StageVerdict("output", version, text, tuple(results))


def _pii_detector(deps: OutputDeps, enabled: bool, min_score: float,
                  indexed: list[str | None], joins: dict[str, list[str]]
                  ) -> tuple[FindPii, StoredDetector | None]:
    """The detector the PII check calls: the stored findings of the indexed texts (fetched now,
    one query) in front of the real one, when a store is configured; merged citations
    (``joins``) from their chunks' findings."""
    if deps.pii_store is None or not enabled:
        return deps.find_pii, None
    stored = StoredDetector(deps.find_pii, deps.pii_store, min_score)
    stored.prefetch((t for t in indexed if t), joins)
    return stored, stored


def _cited_context(citations: list[Citation], retrieved: list[RetrievedChunk]) -> list[str]:
    """The text the answer cites: each citation's chunks as retrieved (the prompt's text),
    falling back to the citation's own text."""
    by_id = {chunk.chunk_id: chunk.text for chunk in retrieved}
    texts = []
    for citation in citations:
        chunk_texts = [by_id[c] for c in (citation.chunk_ids or [citation.chunk_id])
                       if c in by_id]
        texts.extend(chunk_texts or ([citation.text] if citation.text else []))
    return texts


def final_reply(draft: RagReply, verdict: StageVerdict, policy: Policy) -> RagReply:
    """The reply as it leaves: evidence and routing stripped, every decision of both stages
    attached, the answer replaced or refused as the verdict says."""
    input_decisions: list[Decision] = []
    if draft.evidence is not None and draft.evidence.screening is not None:
        input_decisions = list(draft.evidence.screening.decisions)
    update: dict[str, Any] = {
        "reply_to": None, "evidence": None, "handoff": None, "answer": verdict.text,
        "guardrails": [*draft.guardrails, *input_decisions, *verdict.decisions()],
    }
    pii = next((r for r in verdict.results if r.check == "output_pii"), None)
    if pii is not None and "citations" in pii.details:
        update["citations"] = list(pii.details["citations"])
    if verdict.blocked:
        update.update(status="refused", citations=[],
                      error="blocked by output guardrails: " + "; ".join(verdict.block_reasons))
    elif any(r.triggered and r.action == "replace" for r in verdict.results):
        update["citations"] = []
    return draft.model_copy(update=update)
