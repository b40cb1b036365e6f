"""Build the small supervision set of the fine-tuning demo and tests from examples/docs/.

    .venv/bin/python examples/finetune/make_sets.py

Hand-written questions and short answers about the example documents (the ACME handbook,
expenses page and incident policy), rendered exactly as the RAG worker prompts the model: the
``default`` template over 2-3 numbered passages (paragraphs of the documents, titled and with
the doc ids ``customllm publish examples/docs`` gives them), gold passage shuffled among
distractors, target ``<answer> [n].`` or the template's no-answer text. Writes:

* ``train.jsonl``: supervision examples (``messages`` format with source, licence, privacy
  class and tags, ready for ``customllm examples import``);
* ``heldout.jsonl``: held-out examples of the same task (other questions);
* ``heldout_cases.jsonl``: the held-out questions as evaluation-harness cases (``EvalCase``),
  for ``customllm eval run`` against the published documents.

Deterministic (seeded): rerunning rewrites the same files.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from services.common.evaluation.models import EvalCase
from services.common.evaluation.testsets import write_jsonl as write_cases
from services.common.prompting.context_item import ContextItem
from services.common.prompting.prompts import load_template, render
from services.finetune.taskdata import target_answer

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
PRIVACY = ("public", "internal", "confidential", "restricted")

# doc id → (title, privacy class, as the folder metadata of examples/docs/ sets them)
DOCUMENTS = {
    "handbook/onboarding.md": ("Onboarding at ACME Analytics", "internal"),
    "handbook/expenses.html": ("Travel and expenses", "internal"),
    "policies/incident-response.txt": ("Incident response policy", "restricted"),
}

# (gold paragraph key, or None when the answer is in no passage; question; answer)
TRAIN = [
    ("P2", "What must new engineers set up on their first morning?", "a hardware security key"),
    ("P2", "Who grants access to source code and the data warehouse?",
     "your manager, through the access portal"),
    ("P2", "What do new engineers sign in with on the first morning?",
     "the temporary password from the welcome email"),
    ("P3", "How long does a production access grant last?",
     "ninety days, unless a team lead renews it"),
    ("P3", "How many on-call shifts must an engineer shadow before asking for production access?",
     "two"),
    ("P3", "Who can renew a production access grant?", "a team lead"),
    ("P4", "What do new engineers do during their first week?", "pair with a buddy on small fixes"),
    ("P4", "How many services must the first backlog item touch?", "at least two"),
    ("P4", "What happens at the end of the first month?",
     "you present what you learned to the team in a short demo"),
    ("P5", "Where do questions about tools go?", "the platform channel"),
    ("P5", "Who runs the confidential ethics line?", "an external provider"),
    ("P5", "Where should questions about pay or leave go?", "the people team"),
    ("E1", "How should employees book travel?", "through the company travel desk"),
    ("E1", "What is the default class for flights under six hours?", "economy class"),
    ("E1", "Who approves premium economy on longer flights?", "your manager"),
    ("E2", "Up to what amount are meals reimbursed while travelling?",
     "the daily allowance of the destination city"),
    ("E2", "Is alcohol reimbursed?", "no, alcohol is never reimbursed"),
    ("E2", "Are card slips accepted as receipts?", "no, itemised receipts are required"),
    ("E3", "Within how many days must expense claims be submitted?", "thirty days"),
    ("E3", "Which expense claims need a second approval?", "claims above 1,000 EUR"),
    ("E3", "Through which system are expense claims submitted?", "the finance portal"),
    ("I1", "How quickly must a suspected security incident be reported?",
     "within one hour of discovery"),
    ("I1", "How is a security incident reported?",
     "through the incident hotline or the security channel"),
    ("I2", "Who classifies an incident by severity?", "the on-call security engineer"),
    ("I2", "When must the data protection officer hear about a severity one incident?",
     "within four hours"),
    ("I3", "Who decides whether customers are notified?",
     "legal together with the data protection officer"),
    ("I3", "How soon are regulators notified when customers' personal data is affected?",
     "within seventy-two hours"),
    ("I4", "When is the post-mortem written?", "within ten working days"),
    ("I4", "Where are post-mortem action items tracked?", "in the risk register"),
    (None, "What is the parking policy at the office?", None),
    (None, "How many vacation days do new engineers get?", None),
    (None, "Which laptop model do engineers receive?", None),
    (None, "What is the hotel budget per night?", None),
]
HELDOUT = [
    ("P1", "Which company is the onboarding handbook for?", "ACME Analytics"),
    ("P3", "What must be completed before asking for production access?",
     "the security training"),
    ("P4", "In which weeks do new engineers pick a backlog item?", "weeks two and three"),
    ("E1", "Which team needs to know where travellers are?", "the duty-of-care team"),
    ("E3", "What must be attached to an expense claim?", "a photo of every receipt"),
    ("I1", "Should suspicious logs be deleted?", "no, logs and files must not be deleted"),
    ("I2", "What does a severity one incident trigger?", "the crisis team"),
    ("I4", "What kind of post-mortem is written after a severe incident?",
     "a blameless post-mortem"),
    (None, "What is the dress code?", None),
    (None, "How are bonuses calculated?", None),
]


def paragraphs() -> dict[str, tuple[str, str]]:
    """Paragraph key → (doc id, text), keys P1.. (onboarding), E1.. (expenses), I1.. (policy)."""
    found: dict[str, tuple[str, str]] = {}
    onboarding = (DOCS / "handbook/onboarding.md").read_text(encoding="utf-8")
    blocks = [b.strip() for b in onboarding.split("\n\n") if b.strip() and not b.startswith("#")]
    for i, block in enumerate(blocks, start=1):
        found[f"P{i}"] = ("handbook/onboarding.md", " ".join(block.split()))
    html = (DOCS / "handbook/expenses.html").read_text(encoding="utf-8")
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    parts = re.findall(r"<p>(.*?)</p>", html, flags=re.S)
    items = re.findall(r"<li>(.*?)</li>", html, flags=re.S)
    for i, text in enumerate([*parts, " ".join(items)], start=1):
        found[f"E{i}"] = ("handbook/expenses.html", " ".join(text.split()))
    policy = (DOCS / "policies/incident-response.txt").read_text(encoding="utf-8")
    blocks = [b.strip() for b in policy.split("\n\n")[1:] if b.strip()]
    for i, block in enumerate(blocks, start=1):
        found[f"I{i}"] = ("policies/incident-response.txt", " ".join(block.split()))
    return found


def build(rows: list, rng: random.Random, prefix: str) -> tuple[list[dict], list[EvalCase]]:
    template = load_template("default")
    paras = paragraphs()
    keys = sorted(paras)
    lines: list[dict] = []
    cases: list[EvalCase] = []
    for index, (gold, question, answer) in enumerate(rows):
        others = [k for k in keys if k != gold and paras[k][0] != (paras[gold][0] if gold else "")]
        chosen = rng.sample(others, 2 if gold else rng.choice((2, 3)))
        passages = [*chosen, gold] if gold else chosen
        rng.shuffle(passages)
        items = [ContextItem(n=i, chunk_ids=(paras[k][0],), doc_id=paras[k][0],
                             title=DOCUMENTS[paras[k][0]][0], uri=paras[k][0],
                             text=paras[k][1], score=1.0)
                 for i, k in enumerate(passages, start=1)]
        target = (target_answer(answer, passages.index(gold) + 1) if gold
                  else template.no_answer)
        privacy = max((DOCUMENTS[paras[k][0]][1] for k in passages), key=PRIVACY.index)
        lines.append({"messages": [*render(template, question, items),
                                   {"role": "assistant", "content": target}],
                      "source": "acme-demo-sft", "license": "CC-BY-4.0",
                      "privacy_class": privacy, "tags": ["cited-answers", prefix]})
        cases.append(EvalCase(
            id=f"acme-{prefix}-{index:03d}", question=question,
            answers=[answer] if answer else [], gold_doc_ids=[paras[gold][0]] if gold else [],
            expected="answer" if gold else "refuse",
            tags=["answerable" if gold else "unanswerable", "acme"]))
    return lines, cases


def main() -> None:
    train, _ = build(TRAIN, random.Random(1), "train")
    heldout, cases = build(HELDOUT, random.Random(2), "heldout")
    for name, lines in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        (HERE / name).write_text("".join(json.dumps(line, ensure_ascii=False) + "\n"
                                         for line in lines), encoding="utf-8")
    write_cases(cases, HERE / "heldout_cases.jsonl")
    print(f"wrote {len(train)} train, {len(heldout)} held-out examples, {len(cases)} cases")  # noqa: T201


if __name__ == "__main__":
    main()
