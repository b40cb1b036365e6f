"""Named, labelled data sources for the learned heads: one loader for the shipped heads'
build (``python -m services.guardrails.build_heads``) and for the benchmark's
leave-one-source-out runs, so both see exactly the same texts.

Project-written sources live in ``data/`` (provenance in ``data/README.md``) and
``policies/seed_attacks.jsonl``; public data sets are read from a path given on the command
line and never copied into the project.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from services.guardrails import classifier, hate
from services.guardrails.attack_corpus import SEED_FILE

DATA = Path(__file__).parent / "data"
HARD_NEGATIVES = DATA / "injection_hard_negatives.jsonl"
ATTACKS = DATA / "injection_attacks.jsonl"
HATE_FUNCTIONAL = DATA / "hate_functional.jsonl"
HATE_TRAIN = DATA / "hate_train.jsonl"
HATE_TEMPLATES = DATA / "hate_templates.json"
TEMPLATE_CASES_PER_KIND = 120
SQUAD_QUESTIONS = 300


@dataclass(frozen=True)
class Source:
    name: str
    texts: list[str]
    labels: list[int]
    kinds: list[str]  # finer category per text (e.g. "quoted", "hate_no_slur")


def _project_file(name: str, path: Path) -> Source:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return Source(name, [r["text"] for r in rows], [int(r["label"]) for r in rows],
                  [r.get("kind", "") for r in rows])


def squad_questions(path: Path, n: int = SQUAD_QUESTIONS, seed: int = 0) -> Source:
    """Ordinary questions (benign) from a SQuAD JSON file, a fixed random sample."""
    squad = json.loads(path.read_text(encoding="utf-8"))
    questions = [q["question"] for a in squad["data"] for p in a["paragraphs"]
                 for q in p["qas"]]
    random.Random(seed).shuffle(questions)
    picked = questions[:n]
    return Source("squad_questions", picked, [0] * len(picked), ["ordinary"] * len(picked))


def pii_sentences(path: Path) -> Source:
    """Benign sentences full of personal data (names, addresses, e-mails, card numbers) from a
    Presidio-research JSON file: what real questions carry, and nothing like an attack."""
    records = json.loads(path.read_text(encoding="utf-8"))
    texts = [r["full_text"] for r in records]
    return Source("pii_sentences", texts, [0] * len(texts), ["pii"] * len(texts))


def injection_sources(deepset: Path, squad: Path | None,
                      pii: Path | None = None) -> dict[str, Source]:
    """Every source of injection / benign texts, by name."""
    texts, labels = classifier.read_jsonl(deepset)
    sources = [Source("deepset", texts, labels, ["attack" if y else "benign" for y in labels]),
               *packaged("injection")]
    if squad is not None:
        sources.append(squad_questions(squad))
    if pii is not None:
        sources.append(pii_sentences(pii))
    return {s.name: s for s in sources}


def _seed() -> tuple[list[str], list[int], list[str]]:
    rows = [json.loads(line) for line in SEED_FILE.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return [r["text"] for r in rows], [1] * len(rows), [r.get("lang", "") for r in rows]


def _hate_file(name: str, path: Path) -> Source:
    texts, labels, _ = hate.read_jsonl(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    return Source(name, texts, labels, [r["kind"] for r in rows])


def hate_functional() -> Source:
    """The hand-written *test* cases: never trained on, by the shipped head or any other."""
    return _hate_file("hate_functional", HATE_FUNCTIONAL)


def hate_train() -> Source:
    """Hand-written training cases, disjoint from the functional test cases."""
    return _hate_file("hate_train", HATE_TRAIN)


def _filled(template: str, slots: dict[str, list[str]]) -> list[str]:
    names = re.findall(r"\{(\w+)\}", template)
    texts = [template.format(**dict(zip(names, values, strict=True)))
             for values in itertools.product(*(slots[name] for name in names))]
    return [t[0].upper() + t[1:] for t in texts]


def hate_templated(per_kind: int = TEMPLATE_CASES_PER_KIND, seed: int = 0,
                   fold: tuple[int, int] | None = None) -> Source:
    """Training cases filled in from ``hate_templates.json``: every template with every value
    of its slots, then ``per_kind`` per kind, drawn evenly across the kind's templates (a kind
    with one prolific template would otherwise teach that one sentence). ``fold`` (k, n) keeps
    only the templates whose position within their kind is k modulo n: template-disjoint
    halves, for choosing a recipe without the functional test cases."""
    spec = json.loads(HATE_TEMPLATES.read_text(encoding="utf-8"))
    by_kind: dict[tuple[str, str], list[list[str]]] = {}
    for template in spec["templates"]:
        key = (template["kind"], template["label"])
        by_kind.setdefault(key, []).append(_filled(template["text"], spec["slots"]))
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    kinds: list[str] = []
    for (kind, label), filled in by_kind.items():
        if fold is not None:
            filled = [f for i, f in enumerate(filled) if i % fold[1] == fold[0]]
        pools = [rng.sample(f, len(f)) for f in filled]
        picked: list[str] = []
        while len(picked) < per_kind and any(pools):
            for pool in pools:
                if pool and len(picked) < per_kind:
                    picked.append(pool.pop())
        texts += picked
        labels += [hate.HATE_LABELS[label]] * len(picked)
        kinds += [kind] * len(picked)
    return Source("hate_templated", texts, labels, kinds)


def packaged(task: str) -> list[Source]:
    """The project-written training sources that ship with the package, for ``customllm
    guardrails train`` to add to a user's data: a team's own examples rarely show what these
    teach (attacks in disguise and benign look-alikes; counter-speech, negation and neutral
    mentions of groups), and a head retrained without them loses it. The functional hate cases
    are test data and never among them."""
    if task == "injection":
        return [Source("seed_attacks", *_seed()), _project_file("handwritten_attacks", ATTACKS),
                _project_file("handwritten_hard_negatives", HARD_NEGATIVES)]
    if task == "hate":
        return [hate_train(), hate_templated()]
    raise ValueError(f"unknown task {task!r}")


def tweets(path: Path) -> Source:
    texts, labels, kinds = hate.read_jsonl(path)
    return Source("davidson_tweets", texts, labels, kinds)
