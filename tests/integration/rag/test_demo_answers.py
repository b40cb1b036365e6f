"""The demo's three questions, answered right by the embedded default (issue 15 item 5).

The example documents (``examples/docs``, with the demo's edit "ninety days" → "sixty days"),
paragraph by paragraph, written to real Postgres with the real encoder's vectors; the shipped
answer adapter installed through the real adapter registry (registered, gate read, promoted;
a second install adds nothing); the rag pipeline's stages with the real local model, extractive
by default, as the rag worker runs them. The PII-redacted question is asked the way the input
guardrail hands it on (``services.common.pii.redact`` writes ``<ENTITY_TYPE>``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from pathlib import Path

import pytest

from services.common import adapter_registry as registry
from services.common.events import Principal, RagFilters, RagOptions, RagRequest, Screening
from services.common.generation.answer_adapter import from_settings, gate_margin, install, read_gate
from services.common.generation.local_backend import LocalBackend
from services.common.generation.local_engine import LocalEngine
from services.rag import pipeline
from services.rag.config import rag_settings
from tests.integration.rag.rows import Doc, write_documents

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "docs"
EMPLOYEE = Principal(id="demo-alice", groups=["employees"], clearance="internal")
SECURITY = Principal(id="demo-sam", groups=["security-team"], clearance="restricted")


def _paragraphs(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".html":
        text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", text, flags=re.S)
        text = re.sub(r"</(p|li|h\d)>", "\n\n", text)
        text = re.sub(r"<[^>]+>", " ", text)
    parts = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return [p for p in parts if len(p.split()) >= 4]


@pytest.fixture(scope="module")
def name() -> str:
    return f"answers-demo-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def adapters_dir(stack, name, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("adapters")
    outcome = install(stack.engine, folder, name, stack.settings.local_model_id)
    assert outcome.startswith("promoted"), outcome
    return folder


@pytest.fixture(scope="module")
def deps(stack, embedder, adapters_dir, name) -> pipeline.RagDeps:
    engine = LocalEngine.from_settings(stack.settings.model_copy(
        update={"adapters_dir": adapters_dir}))
    shipped = from_settings()
    assert shipped is not None
    # as serving: the margin is the served version's own (its gate.json, copied at install)
    backend = LocalBackend(engine, answer_adapter=dataclasses.replace(shipped, name=name))
    backend.warm_up()
    return pipeline.RagDeps(engine=stack.engine, embedder=embedder, backend=backend,
                            config=rag_settings(), model_id=stack.settings.served_model_id,
                            max_new_tokens=16)


@pytest.fixture(scope="module")
def corpus(stack, embedder) -> str:
    prefix = f"demo-{uuid.uuid4().hex[:8]}/"
    docs = []
    for path, privacy, acl, title in (
            (EXAMPLES / "handbook" / "onboarding.md", "internal", (), "Onboarding"),
            (EXAMPLES / "handbook" / "expenses.html", "internal", (), "Travel and expenses"),
            (EXAMPLES / "policies" / "incident-response.txt", "restricted",
             ("security-team", "legal"), "Incident response policy")):
        texts = [t.replace("ninety days", "sixty days") for t in _paragraphs(path)]
        docs.append(Doc(prefix + path.name, texts, vectors=embedder.encode_passages(texts),
                        privacy_class=privacy, acl=acl, title=title))
    write_documents(stack.engine, docs)
    return prefix


def _ask(deps, prefix: str, question: str, principal: Principal):
    request = RagRequest(request_id=f"demo-{uuid.uuid4().hex[:10]}", question=question,
                         reply_to="rag.replies.tests", principal=principal,
                         screening=Screening(policy_version="default@test"),
                         options=RagOptions(filters=RagFilters(doc_id_prefix=prefix),
                                            use_cache=False))
    return asyncio.run(pipeline.answer(request, deps))


@pytest.mark.parametrize(("question", "principal", "expected", "doc"), [
    ("How long does production access last before it must be renewed?", EMPLOYEE,
     "sixty days", "onboarding.md"),
    # "hours" is the question's own word: the constraint never copies it, so the span is
    # "seventy-two" (the adapter shipped before this one abstained here).
    ("Within how many hours must regulators be notified?", SECURITY, "seventy-two",
     "incident-response.txt"),
    # As the default input policy passes the demo's third question on: the e-mail redacted.
    ("I am Jane Doe (<EMAIL_ADDRESS>): how long does production access last before it must "
     "be renewed?", EMPLOYEE, "sixty days", "onboarding.md"),
])
def test_the_demo_questions_are_answered_right(deps, corpus, name, question, principal,
                                               expected, doc):
    reply = _ask(deps, corpus, question, principal)
    assert reply.status == "ok", reply
    assert expected in reply.answer, reply.answer
    assert len(reply.answer.split()) <= 8, reply.answer  # a phrase and its marker, no loop
    assert [c.doc_id for c in reply.citations][:1] == [corpus + doc]


def test_the_shipped_adapter_is_installed_once(stack, adapters_dir, name):
    again = install(stack.engine, adapters_dir, name, stack.settings.local_model_id)
    versions = registry.list_versions(stack.engine, name)
    assert [v.status for v in versions] == ["promoted"], again
    assert versions[0].gate.get("passed") is True
    assert (adapters_dir / name).is_symlink()


def test_an_upgrade_serves_the_shipped_weights_new_calibration(stack, adapters_dir, name):
    # a release that recalibrates the same weights (the margin 2.5 of an earlier release, now
    # "never"): the registered copy, which serving reads, follows at the next start
    folder = Path(registry.list_versions(stack.engine, name)[0].path)
    earlier = {**read_gate(), "abstain_margin": 2.5}
    (folder / "gate.json").write_text(json.dumps(earlier))
    assert from_settings().margin_for(folder) == 2.5
    install(stack.engine, adapters_dir, name, stack.settings.local_model_id)
    assert read_gate(folder) == read_gate()
    assert from_settings().margin_for(folder) == gate_margin(read_gate()["abstain_margin"])
    [version] = registry.list_versions(stack.engine, name)
    assert version.gate["abstain_margin"] == read_gate()["abstain_margin"]
    assert version.status == "promoted"
