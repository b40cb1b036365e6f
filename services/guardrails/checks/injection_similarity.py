"""Layer 2 of prompt-injection detection: closeness to known attacks (pgvector).

Catches paraphrases of known attacks that no rule names. Skipped (and the audit trail says
so) when the stage runs without a database or an embedding model, e.g. ``customllm
guardrails check --offline``.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.guardrails import attack_corpus
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.checks.results import CheckResult
from services.guardrails.policy import CheckPolicy

CHECK = "injection_similarity"


def check_injection_similarity(text: str, policy: CheckPolicy, engine: Engine | None,
                               embed: EmbedFn | None, encoder: str | None = None) -> CheckResult:
    """``encoder``: the model id behind ``embed``; the corpus is compared (and first brought)
    in that model's space. None: not known, every row is compared as it is."""
    if not policy.enabled:
        return CheckResult(CHECK, None, False, "skip", "disabled by policy")
    if engine is None or embed is None:
        return CheckResult(CHECK, None, False, "skip", "no attack corpus (database) configured")
    attack_corpus.ensure_seeded(engine, embed, encoder)
    queries = attack_corpus.query_texts(text)
    scored = attack_corpus.scored_neighbours(engine, queries, embed(queries), k=3,
                                             encoder=encoder)
    if not scored:
        return CheckResult(CHECK, 0.0, False, "allow", "attack corpus is empty")
    top_score, top = scored[0]
    score = round(max(0.0, min(1.0, top_score)), 4)
    details = {"nearest": [{"attack_id": n.attack_id, "similarity": round(n.similarity, 4),
                            "score": round(s, 4), "source": n.source} for s, n in scored]}
    if score < policy.threshold:
        return CheckResult(CHECK, score, False, "allow", "", details)
    reason = (f"close to known attack #{top.attack_id} (similarity {score:.2f} "
              f"≥ {policy.threshold:.2f})")
    return CheckResult(CHECK, score, True, policy.action, reason, details)
