"""Question/answer pairs the system produced, turned into supervision examples for review.

Source: evaluation results stored in Postgres (``eval_results``): each holds the question, the
answer the real query path gave, the text of the passages it cited, and its scores. A result
becomes a candidate example when it was answered (not refused, not an error, not an
abstention), cited at least one passage, and scored at least ``min_f1`` token F1 against the
references, i.e. a good answer worth teaching. The prompt is rebuilt with the production
template over the cited passages, renumbered 1..k in citation order, and the answer's markers
are renumbered the same way, so the example teaches exactly the format serving expects.
Candidates whose markers cannot be mapped unambiguously are skipped, never guessed. Every
candidate lands as ``pending``: a person approves it (``customllm examples review``).

Lineage records the evaluation run, case, test-set hash and scores, so a trained adapter can be
traced back to the answers it learnt from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.citation_markers import CITATION_MARKER, cited_markers
from services.common.evaluation.models import CaseResult
from services.common.grounding.text import is_abstention
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import PromptTemplate, render
from services.finetune.examples import ChatExample


@dataclass(frozen=True)
class Candidate:
    example: ChatExample
    lineage: dict[str, Any]


@dataclass(frozen=True)
class Skipped:
    case_id: str
    reason: str




def candidate_from_result(result: CaseResult, metrics: dict[str, Any], template: PromptTemplate,
                          *, min_f1: float, run_id: str, testset_hash: str | None = None
                          ) -> Candidate | Skipped:
    """One evaluation result → a candidate example, or why not."""
    case = result.case_id
    if result.status != "ok" or result.error:
        return Skipped(case, f"status {result.status}")
    if result.abstained or is_abstention(result.answer, template.no_answer):
        return Skipped(case, "abstained")
    f1 = metrics.get("token_f1")
    if f1 is None or f1 < min_f1:
        return Skipped(case, f"token F1 {f1} below {min_f1}")
    markers = cited_markers(result.answer)
    if not markers or not result.contexts:
        return Skipped(case, "no citation")
    if len(markers) != len(result.contexts):
        return Skipped(case, "cited passages and markers do not line up")
    renumber = {old: new for new, old in enumerate(markers, start=1)}
    answer = CITATION_MARKER.sub(lambda m: f"[{renumber[int(m.group(1))]}]", result.answer).strip()
    doc_ids = (result.cited_doc_ids if len(result.cited_doc_ids) == len(result.contexts)
               else [f"source-{i}" for i in range(1, len(result.contexts) + 1)])
    items = [ContextItem(n=i, chunk_ids=(doc_id,), doc_id=doc_id, title=None, uri=None,
                         text=text, score=1.0)
             for i, (doc_id, text) in enumerate(zip(doc_ids, result.contexts, strict=True),
                                                start=1)]
    messages = [*render(template, result.question, items),
                {"role": "assistant", "content": answer}]
    lineage = {"origin": "evaluation", "run_id": run_id, "case_id": case,
               "testset_hash": testset_hash, "cited_doc_ids": list(result.cited_doc_ids),
               "token_f1": f1, "exact_match": metrics.get("exact_match"),
               "template": template.id}
    return Candidate(ChatExample(messages=messages), lineage)


def candidates(results: Iterable[tuple[CaseResult, dict[str, Any]]], template: PromptTemplate, *,
               min_f1: float, run_id: str, testset_hash: str | None = None
               ) -> tuple[list[Candidate], list[Skipped]]:
    good: list[Candidate] = []
    skipped: list[Skipped] = []
    for result, metrics in results:
        item = candidate_from_result(result, metrics, template, min_f1=min_f1, run_id=run_id,
                                     testset_hash=testset_hash)
        (good if isinstance(item, Candidate) else skipped).append(item)
    return good, skipped
