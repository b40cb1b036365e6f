"""The input stage: every check a question passes before retrieval and generation.

Order matters and is fixed: normalize (so no check is fooled by invisible characters or
full-width letters) → length → prompt injection in layers (rules, similarity to known
attacks, the learned head) → hate → toxicity → PII. PII comes last so every detector sees the
question as the user meant it, and only what goes on is redacted. Every check runs and is
recorded even after one blocks, so the audit trail and ``customllm guardrails check`` show
the whole picture; a blocked question gets no retrieval and no generation.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from services.common.config import Settings
from services.common.events import QuestionVector, Screening
from services.common.linear_head import LinearHead, head_path
from services.common.text_normalize import normalize
from services.guardrails import attack_corpus
from services.guardrails import classifier as classifier_mod
from services.guardrails import hate as hate_mod
from services.guardrails.attack_corpus import EmbedFn
from services.guardrails.checks.hate import check_hate
from services.guardrails.checks.injection_classifier import check_injection_classifier
from services.guardrails.checks.injection_rules import check_injection_rules
from services.guardrails.checks.injection_similarity import check_injection_similarity
from services.guardrails.checks.normalize import length_result, normalize_result
from services.guardrails.checks.pii import check_pii
from services.guardrails.checks.results import CheckResult, StageVerdict
from services.guardrails.checks.toxicity import check_toxicity
from services.guardrails.encoder import check_head, head_encoder
from services.guardrails.policy import Policy

logger = logging.getLogger(__name__)


@dataclass
class InputDeps:
    """What the checks need beyond the text. Any of them may be None: the check that needs it
    is then recorded as skipped, with the reason.

    ``embed`` is the sentence encoder: the learned heads (injection, hate) score its vectors,
    and the similarity layer queries with them. ``classifier`` and ``hate_head`` pin a head
    (tests, benchmarks); otherwise the policy's ``model``, else the one ``customllm
    guardrails train`` wrote under ``<state_dir>/guardrails/``, else the packaged one is used,
    re-read when the file changes.
    """

    engine: Engine | None = None
    embed: EmbedFn | None = None
    # Texts with one key are one input to ``embed`` (``Embedder.same_input_key``); None: the
    # text itself.
    same_input: Callable[[str], str] | None = None
    classifier: LinearHead | None = None
    hate_head: LinearHead | None = None
    state_dir: Path | None = None
    # The model id behind ``embed``: a head trained on another encoder is refused. None: not
    # known (tests, benchmarks that pin their own heads).
    encoder_id: str | None = None
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    @property
    def timings_ms(self) -> dict[str, float]:
        """Milliseconds per check of the last ``screen_input`` call in this thread (the stage
        may screen several questions at once in worker threads)."""
        if not hasattr(self._local, "timings"):
            self._local.timings = {}
        return self._local.timings

    @property
    def cpu_ms(self) -> dict[str, float]:
        """CPU milliseconds of this thread per check, same call: what each check costs on one
        core whatever else the machine runs (the models run on the calling thread: one
        intra-op thread), where wall time also counts waiting for a busy CPU."""
        if not hasattr(self._local, "cpu"):
            self._local.cpu = {}
        return self._local.cpu

    def classifier_for(self, policy: Policy) -> LinearHead | None:
        if self.classifier is not None:
            return self.classifier
        head = classifier_mod.load_cached(head_path(
            policy.input.injection_classifier.model, self.state_dir, classifier_mod.MODEL_FILE,
            classifier_mod.PACKAGED_MODEL))
        return None if head is None else check_head(head, self.encoder_id, "injection")

    def hate_head_for(self, policy: Policy) -> LinearHead | None:
        if self.hate_head is not None:
            return self.hate_head
        head = hate_mod.load_cached(head_path(policy.input.hate.model, self.state_dir,
                                              hate_mod.MODEL_FILE, hate_mod.PACKAGED_MODEL))
        return None if head is None else check_head(head, self.encoder_id, "hate")


def load_input_deps(settings: Settings, with_database: bool = True) -> InputDeps:
    """Deps for a running service: the shared database (attack corpus) and the heads' encoder
    (``services.guardrails.encoder``: MiniLM int8 on ONNX Runtime unless configured), loaded
    lazily on first use (the learned heads need it even without a database)."""
    from services.common.db import make_engine

    engine = make_engine(settings.sqlalchemy_url, pool_size=4) if with_database else None
    encoder = head_encoder()
    return InputDeps(engine=engine, embed=encoder.encode, same_input=encoder.same_input_key,
                     state_dir=settings.state_path, encoder_id=encoder.model_id)


def warm_up(deps: InputDeps, policy: Policy) -> None:
    """Pay every first-use cost (Presidio and spaCy, the toxicity model, MiniLM, the trained
    classifier, seeding the attack corpus) before the first real question, not during it."""
    screen_input("warm up the input checks", policy, deps)


def screen_input(question: str, policy: Policy, deps: InputDeps) -> StageVerdict:
    """Run every input check; ``verdict.text`` is the normalized, PII-redacted question."""
    inp = policy.input
    timings, cpu = deps.timings_ms, deps.cpu_ms
    timings.clear()
    cpu.clear()
    started = time.perf_counter()
    cpu_started = cpu_last = time.thread_time()

    def timed(name: str, since: float) -> float:
        nonlocal cpu_last
        now, cpu_now = time.perf_counter(), time.thread_time()
        timings[name] = round((now - since) * 1000, 3)
        cpu[name] = round((cpu_now - cpu_last) * 1000, 3)
        cpu_last = cpu_now
        return now

    embed = _embedded_once(deps.embed, deps.same_input)
    normalized = normalize(question)
    results: list[CheckResult] = [normalize_result(normalized)]
    length = length_result(normalized, inp)
    results.append(length)
    text = normalized.text[:inp.max_chars] if length.triggered else normalized.text
    t = timed("normalize", started)

    results.append(check_injection_rules(text, inp.injection_rules))
    t = timed("injection_rules", t)
    if embed is not None:
        _embed_in_one_batch(text, policy, deps, embed)
        t = timed("embed (one batch)", t)
    results.append(check_injection_similarity(text, inp.injection_similarity, deps.engine,
                                              embed, deps.encoder_id))
    t = timed("injection_similarity", t)
    results.append(check_injection_classifier(text, inp.injection_classifier,
                                              deps.classifier_for(policy), embed))
    t = timed("injection_classifier", t)
    results.append(check_hate(text, inp.hate, deps.hate_head_for(policy), embed))
    t = timed("hate", t)
    results.append(check_toxicity(text, inp.toxicity))
    t = timed("toxicity", t)
    pii_result, redacted = check_pii(text, inp.pii)
    results.append(pii_result)
    t = timed("pii", t)
    timings["total"] = round((t - started) * 1000, 3)
    cpu["total"] = round((cpu_last - cpu_started) * 1000, 3)
    return StageVerdict(stage="input", policy_version=policy.policy_version, text=redacted,
                        results=tuple(results),
                        text_vector=None if embed is None else embed.held(redacted))


def _embed_in_one_batch(text: str, policy: Policy, deps: InputDeps, embed: EmbedFn) -> None:
    """One encoder call for every text the checks after it will embed (the injection head's
    readable form and sentences, which are also the similarity layer's queries, and the hate
    head's view), so they find their vectors in ``embed``'s memory instead of each calling the
    model: for a one-sentence question two forms in one batch cost 6.9 ms, in two calls 12.0
    ms (MiniLM int8, one thread). Its time is recorded as ``embed (one batch)``; the
    checks' own times are then the scoring (and the corpus query) alone. One ``encode``: the
    encoder cuts its model calls by length itself (``Embedder._encode``; for the ONNX one the
    cheapest cuts, on the benchmark's 150 texts up to 2,000 characters p50 20.6 -> 19.0 CPU ms
    against length groups made here before, the same vectors)."""
    inp = policy.input
    wanted: list[str] = []
    if inp.injection_similarity.enabled and deps.engine is not None:
        wanted += attack_corpus.query_texts(text)
    if inp.injection_classifier.enabled and deps.classifier_for(policy) is not None:
        wanted += classifier_mod.views(text)
    if inp.hate.enabled and deps.hate_head_for(policy) is not None:
        wanted += hate_mod.views(text)
    embed(list(dict.fromkeys(wanted)))  # skips what it already holds under the same input key


class EmbedMemory:
    """``embed`` with a memory for one question: the similarity layer, the injection head and
    the hate head score overlapping texts (the question itself above all), and the encoder is
    the stage's main cost. Keyed on ``same_input``: forms that differ only in case, accents or
    whitespace are one input to an uncased encoder, embedded once. What it holds afterwards is
    read by ``held``: the screened question's vector goes on to the rag worker, which then need
    not encode the question again (when the question is one input with its readable form, as
    1,996 of 2,000 SQuAD questions are, 96 % before "10th" stopped reading as leetspeak; the
    others, "VH1" read as "vhi" or a folded "ł", are encoded there)."""

    def __init__(self, embed: EmbedFn, same_input: Callable[[str], str] | None = None) -> None:
        self._embed = embed
        self._key = same_input or (lambda text: text)
        self._known: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing: dict[str, str] = {}
        for text, k in zip(texts, keys, strict=True):
            if k not in self._known:
                missing.setdefault(k, text)
        if missing:
            self._known.update(zip(missing, self._embed(list(missing.values())), strict=True))
        return np.stack([self._known[k] for k in keys]) if texts else self._embed([])

    def held(self, text: str) -> np.ndarray | None:
        """The vector of ``text`` if it was embedded as this same input, else None (never
        computed here)."""
        return self._known.get(self._key(text))


def _embedded_once(embed: EmbedFn | None,
                   same_input: Callable[[str], str] | None = None) -> EmbedMemory | None:
    return None if embed is None else EmbedMemory(embed, same_input)


def question_changed(verdict: StageVerdict) -> bool:
    """Whether the text that goes on differs from what the user sent (normalized, cut or
    redacted), so the rag worker and the audit trail can say so."""
    for result in verdict.results:
        if result.check == "normalize" and result.details.get("changed"):
            return True
        if result.triggered and result.action == "redact":
            return True
    return False


def screen_conversation(question: str, history: Sequence[str], policy: Policy,
                        deps: InputDeps) -> tuple[StageVerdict, list[str]]:
    """The question's verdict, plus what the earlier turns trigger, and those turns screened.

    The history is client-supplied and goes into the prompt as it is, so an injection or PII
    placed there must meet the same checks as the question. A turn's triggered results join
    the verdict as ``history[i].<check>`` (so one blocked turn blocks the request, and the
    audit trail says which turn); its untriggered ones are left out to keep the trail short.
    """
    verdict = screen_input(question, policy, deps)
    results = list(verdict.results)
    screened: list[str] = []
    for i, turn in enumerate(history):
        turn_verdict = screen_input(turn, policy, deps)
        screened.append(turn_verdict.text)
        results.extend(dataclasses.replace(r, check=f"history[{i}].{r.check}")
                       for r in turn_verdict.results if r.triggered)
    return dataclasses.replace(verdict, results=tuple(results)), screened


def screening_for(verdict: StageVerdict, policy: Policy, canary: str | None,
                  encoder_id: str | None = None) -> Screening:
    """The directives the rag worker gets on ``rag.screened``, from the verdict and the
    policy's document rules; with the question's vector when the checks embedded the screened
    question itself and the encoder is known (``encoder_id``)."""
    documents = policy.documents
    vector = (None if verdict.text_vector is None or encoder_id is None
              else QuestionVector.of(encoder_id, verdict.text_vector))
    return Screening(
        policy_version=verdict.policy_version,
        decisions=verdict.decisions(),
        question_changed=question_changed(verdict),
        marked_chunks=documents.marked_chunks if documents.injection_scan.enabled else "allow",
        injection_threshold=documents.injection_scan.threshold,
        above_clearance=documents.above_clearance,
        canary=canary,
        question_vector=vector,
    )
