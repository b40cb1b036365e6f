"""Faithfulness: the share of an answer's claims that its cited context supports.

Two ways to decide whether a claim is supported:

* :func:`faithfulness` (default, deterministic, no LLM): a claim (a sentence of the answer) is
  supported when it is close to some context sentence in embedding space (cosine ≥
  ``sim_threshold``) OR when most of its content words appear in one context sentence (lexical
  overlap ≥ ``overlap_threshold``), and every number it states appears in the context.
* :func:`judge_faithfulness` (optional): an LLM judge, called through a plain
  ``ask(prompt) -> reply`` callable, grades each claim; its reply is parsed robustly and
  retried, and an unusable judge gives ``None``, never NaN and never an exception.

Both follow RAGAS' definition: faithfulness = supported claims / claims, in [0, 1].
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from services.common.grounding.text import (
    content_tokens,
    is_abstention,
    split_sentences,
    strip_citation_markers,
    tokens,
)

__all__ = [
    "MIN_CLAIM_TOKENS",
    "ClaimSupport",
    "build_judge_prompt",
    "claim_support",
    "faithfulness",
    "judge_faithfulness",
    "parse_judge_reply",
    "split_claims",
]

Embed = Callable[[list[str]], np.ndarray]

MIN_CLAIM_TOKENS = 3
"""Sentences with fewer normalized tokens ("Yes.", "Sources:", "See [2].") are not claims."""

SIM_THRESHOLD = 0.72  # MiniLM: paraphrases scored 0.76-0.89, a related but unsupported claim 0.67
OVERLAP_THRESHOLD = 0.5


class ClaimSupport(NamedTuple):
    supported: bool
    score: float
    """The stronger of the two pieces of evidence: max(best cosine clipped to [0, 1], best
    lexical overlap). Informative only; ``supported`` applies each threshold to its own
    measure."""


def split_claims(answer: str | None) -> list[str]:
    """The answer's claims: its sentences (:func:`text.split_sentences`, after removing citation
    markers such as ``[1]`` or ``[2, 3]``), without fragments of fewer than
    :data:`MIN_CLAIM_TOKENS` normalized tokens or with no content word."""
    if not answer:
        return []
    sentences = split_sentences(strip_citation_markers(answer))
    return [s for s in sentences if len(tokens(s)) >= MIN_CLAIM_TOKENS and content_tokens(s)]


def _context_sentences(contexts: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for context in contexts or []:
        out.extend(s for s in split_sentences(strip_citation_markers(context or "")) if tokens(s))
    return out


# Number words compared as digits ("five days" vs "5 days"); "one" is left out, being as often
# a pronoun as a number.
_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
          "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen", "twenty")
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_UNITS) if w != "one"}
_NUMBER_WORDS.update({w: str(10 * i) for i, w in enumerate(_TENS, start=3)})


def _numbers(s: str) -> set[str]:
    """The number tokens of ``s``: tokens with a digit, and number words as digits."""
    return {_NUMBER_WORDS.get(t, t) for t in tokens(s)
            if t in _NUMBER_WORDS or any(ch.isdigit() for ch in t)}


def _overlap(claim: str, sentence_tokens: list[set[str]]) -> float:
    words = set(content_tokens(claim))
    if not words or not sentence_tokens:
        return 0.0
    return max(len(words & sent) / len(words) for sent in sentence_tokens)


def _embed_unit(embed: Embed, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"embed returned shape {vectors.shape} for {len(texts)} texts")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return np.nan_to_num(vectors, nan=0.0, posinf=0.0, neginf=0.0)


def _supports(claims: list[str], contexts: Sequence[str], embed: Embed | None,
              sim_threshold: float, overlap_threshold: float,
              check_numbers: bool) -> list[ClaimSupport]:
    sentences = _context_sentences(contexts)
    if not claims:
        return []
    if not sentences:
        return [ClaimSupport(False, 0.0) for _ in claims]
    sentence_tokens = [set(tokens(s)) for s in sentences]
    context_numbers = set().union(*(_numbers(c or "") for c in contexts))
    if embed is not None:
        vectors = _embed_unit(embed, [*claims, *sentences])
        similarity = np.clip(vectors[: len(claims)] @ vectors[len(claims):].T, -1.0, 1.0)
        best_sim = [float(row.max()) for row in similarity]
    else:
        best_sim = [0.0] * len(claims)
    out = []
    for claim, sim in zip(claims, best_sim, strict=True):
        overlap = _overlap(claim, sentence_tokens)
        supported = (embed is not None and sim >= sim_threshold) or overlap >= overlap_threshold
        if check_numbers and not _numbers(claim) <= context_numbers:
            supported = False  # "the limit is 900" is not supported by "the limit is 500"
        out.append(ClaimSupport(bool(supported), max(max(sim, 0.0), overlap)))
    return out


def claim_support(claim: str, contexts: Sequence[str], embed: Embed | None,
                  sim_threshold: float = SIM_THRESHOLD,
                  overlap_threshold: float = OVERLAP_THRESHOLD,
                  check_numbers: bool = True) -> ClaimSupport:
    """Whether the contexts support one claim.

    The contexts are split into sentences. Supported when

    * the maximum cosine similarity between the claim's embedding and a context sentence's is
      ≥ ``sim_threshold`` (skipped when ``embed`` is ``None``), OR
    * the lexical overlap is ≥ ``overlap_threshold``: the largest share, over context
      sentences, of the claim's distinct content tokens (normalized tokens without stop words)
      that occur in that sentence;

    AND (with ``check_numbers``) every number of the claim (a token with a digit, or a number
    word "two".."ninety", compared as digits) occurs somewhere in the contexts, because an
    embedding barely moves when a figure is wrong.
    Returns ``(supported, score)``, see :class:`ClaimSupport`. No context → ``(False, 0.0)``.
    """
    return _supports([claim], contexts, embed, sim_threshold, overlap_threshold,
                     check_numbers)[0]


def faithfulness(answer: str | None, contexts: Sequence[str] | None, embed: Embed | None,
                 *, no_answer_text: str | None = None, sim_threshold: float = SIM_THRESHOLD,
                 overlap_threshold: float = OVERLAP_THRESHOLD,
                 check_numbers: bool = True) -> float | None:
    """Supported claims / claims (:func:`split_claims`, :func:`claim_support`), in [0, 1].

    ``None`` (undefined, left out of means) for an empty answer, an abstention
    (:func:`text.is_abstention`), no (non-blank) context, or an answer with no claim.
    Claims and context sentences are embedded in one ``embed`` call.
    """
    if not answer or not answer.strip() or is_abstention(answer, no_answer_text):
        return None
    contexts = [c for c in contexts or [] if c and c.strip()]
    if not contexts:
        return None
    claims = split_claims(answer)
    if not claims:
        return None
    supports = _supports(claims, contexts, embed, sim_threshold, overlap_threshold,
                         check_numbers)
    return sum(s.supported for s in supports) / len(supports)


# ------------------------------------------------------------------------------- LLM judge

JUDGE_PROMPT = """You check whether claims are supported by a context.
A claim is supported only if the context states it or directly implies it.

Context:
<<<
{context}
>>>

Claims:
{claims}

For each claim answer "yes" (supported) or "no" (not supported).
Reply with one JSON object and nothing else, in this form:
{{"verdicts": [{{"claim": 1, "supported": "yes"}}, {{"claim": 2, "supported": "no"}}]}}
"""

RETRY_SUFFIX = ("\nYour previous reply could not be parsed. Reply with the JSON object only, "
                "one verdict per claim, {n} verdicts in all.")

_YES = frozenset({"yes", "y", "true", "supported", "support", "entailed", "entailment", "1",
                  "correct", "faithful", "grounded", "pass"})
_NO = frozenset({"no", "n", "false", "unsupported", "not supported", "not_supported",
                 "contradicted", "contradiction", "0", "incorrect", "unfaithful", "partial",
                 "partially", "partially supported", "neutral", "ungrounded", "fail",
                 "not enough information", "unknown"})
_VERDICT_KEYS = ("supported", "verdict", "support", "entailed", "label", "answer", "result",
                 "faithful", "value")
_LIST_KEYS = ("verdicts", "claims", "results", "judgements", "judgments", "statements")


def build_judge_prompt(claims: Sequence[str], contexts: Sequence[str],
                       max_context_chars: int = 12000) -> str:
    context = "\n\n".join(f"[{i}] {c.strip()}" for i, c in enumerate(contexts, start=1))
    if len(context) > max_context_chars:
        context = context[:max_context_chars] + " [...]"
    listed = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, start=1))
    return JUDGE_PROMPT.format(context=context, claims=listed)


def _as_verdict(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().strip(".!\"'").lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
    if isinstance(value, dict):
        for key in _VERDICT_KEYS:
            if key in value:
                return _as_verdict(value[key])
    return None


def _json_values(text: str) -> list[Any]:
    """Every JSON object or array that starts at a '{' or '[' of the text, first first."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        found.append(value)
    return found


def _verdict_list(value: Any, n: int) -> list[bool] | None:
    items: Any = None
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        for key in _LIST_KEYS:
            if isinstance(value.get(key), list):
                items = value[key]
                break
        else:
            if n == 1 and (single := _as_verdict(value)) is not None:
                return [single]
            numbered = {str(k).strip(): v for k, v in value.items()}
            if all(str(i) in numbered for i in range(1, n + 1)):
                items = [numbered[str(i)] for i in range(1, n + 1)]
    if items is None or len(items) != n:
        return None
    if all(isinstance(it, dict) and isinstance(it.get("claim"), int) for it in items):
        order = sorted(it["claim"] for it in items)
        if order == list(range(1, n + 1)):
            items = sorted(items, key=lambda it: it["claim"])
    verdicts = [_as_verdict(it) for it in items]
    return None if any(v is None for v in verdicts) else [bool(v) for v in verdicts]


_LINE_VERDICT = re.compile(
    r"^\s*(\d+)\s*[.):\-]\s*\**\s*(yes|no|supported|unsupported|true|false)\b",
    re.IGNORECASE | re.MULTILINE)


def parse_judge_reply(reply: str | None, n_claims: int) -> list[bool] | None:
    """The judge's verdicts, one per claim, or ``None`` if the reply cannot be read.

    Accepted, in order: the first JSON object (or array) in the reply, even inside a code fence
    or prose, holding a list of ``n_claims`` verdicts under ``verdicts``/``claims``/``results``
    (items may be ``{"claim": i, "supported": ...}`` objects, in any claim order, or bare
    values), a ``{"1": ..., "2": ...}`` mapping, or for one claim a single
    ``{"supported": ...}``; then numbered lines ``1. yes``; then, for one claim, a reply that
    starts with a yes/no word. Verdict values may be booleans, 0/1 or words ("yes", "no",
    "supported", "unsupported", "true", "false"...); "partially" counts as not supported.
    """
    if not reply or n_claims < 1:
        return None
    for value in _json_values(reply):
        verdicts = _verdict_list(value, n_claims)
        if verdicts is not None:
            return verdicts
    lines = {int(m.group(1)): _as_verdict(m.group(2)) for m in _LINE_VERDICT.finditer(reply)}
    if sorted(lines) == list(range(1, n_claims + 1)):
        return [bool(lines[i]) for i in range(1, n_claims + 1)]
    if n_claims == 1:
        first = re.match(r"\W*(\w+)", reply)
        if first and (verdict := _as_verdict(first.group(1))) is not None:
            return [verdict]
    return None


def judge_faithfulness(answer: str | None, contexts: Sequence[str] | None,
                       ask: Callable[[str], str], retries: int = 2, *,
                       no_answer_text: str | None = None,
                       max_context_chars: int = 12000) -> float | None:
    """Faithfulness graded by an LLM judge: supported claims / claims.

    The answer is split with :func:`split_claims`; one prompt (:data:`JUDGE_PROMPT`) asks for
    a JSON verdict per claim and :func:`parse_judge_reply` reads the reply. An unreadable
    reply, or an exception from ``ask``, is retried up to ``retries`` more times (with a
    reminder of the format); if every attempt fails the result is ``None`` (reported as
    "judge unavailable"), never NaN and never an exception. ``None`` too where the
    heuristic :func:`faithfulness` is undefined (empty answer, abstention, no context, no
    claim). For reproducible grades use a judge at temperature 0.
    """
    if not answer or not answer.strip() or is_abstention(answer, no_answer_text):
        return None
    contexts = [c for c in contexts or [] if c and c.strip()]
    claims = split_claims(answer)
    if not contexts or not claims:
        return None
    prompt = build_judge_prompt(claims, contexts, max_context_chars)
    for attempt in range(1 + max(0, retries)):
        text = prompt if attempt == 0 else prompt + RETRY_SUFFIX.format(n=len(claims))
        try:
            reply = ask(text)
        except Exception:  # noqa: BLE001 - a failing judge must not fail the run
            continue
        verdicts = parse_judge_reply(reply if isinstance(reply, str) else None, len(claims))
        if verdicts is not None:
            return sum(verdicts) / len(verdicts)
    return None
