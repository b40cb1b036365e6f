"""Feedback on a real answer, end to end on the real stack: a question through the gateway
answered by the real guardrails and rag workers and the local model, the audit recorder
keeping its audit record from the real topics, a correction through the gateway, the
candidate example in the review queue and both in the web console."""

from __future__ import annotations

import httpx
import pytest

from services.common.events import Principal
from tests.integration.console.conftest import STEWARD
from tests.support.console_client import console_as
from tests.support.corpus import indexed_corpus
from tests.support.documents import unique_prefix
from tests.support.feedback import candidate_of, correct
from tests.support.keys import bearer
from tests.support.stack import wait_for

pytestmark = pytest.mark.e2e
ASKER = Principal(id="fiona-feedback", groups=["employees"], clearance="internal")


@pytest.fixture(scope="module")
def facts(stack, workers):
    prefix = unique_prefix("feedback")
    indexed_corpus(stack, prefix)
    return prefix


def test_a_corrected_real_answer_reaches_the_audit_the_review_queue_and_the_console(
        stack, facts, recorder, gateway_url):
    answer = httpx.post(f"{gateway_url}/v1/chat/completions", headers=bearer(ASKER), timeout=300,
                        json={"model": "customllm", "max_tokens": 32,
                              "messages": [{"role": "user",
                                            "content": "What grows in the rooftop garden?"}],
                              "filters": {"doc_id_prefix": facts}})
    assert answer.status_code == 200, answer.text
    rid = answer.json()["customllm"]["request_id"]

    def audited() -> list:
        return stack.query("SELECT * FROM answer_audit WHERE request_id = :r AND question IS "
                           "NOT NULL AND answer IS NOT NULL", r=rid)

    wait_for(audited, 120, what="the real answer's audit record")
    (audit,) = audited()
    assert audit.principal_id == "fiona-feedback" and "garden" in audit.question
    assert audit.template_version and audit.trace_id and audit.model
    assert any(c["doc_id"] == f"{facts}garden" and c["doc_version"] == 1
               for c in audit.retrieved)
    stages = {r.stage for r in stack.query(
        "SELECT DISTINCT stage FROM guardrail_decisions WHERE request_id = :r", r=rid)}
    assert {"input", "output"} <= stages

    correct(gateway_url, ASKER, rid, "Tomatoes and lemon trees grow there.")
    example = candidate_of(stack, rid)
    assert example.review_status == "pending"
    assert example.messages[1]["content"] == "Tomatoes and lemon trees grow there."

    own = console_as(ASKER).get(f"/audits/{rid}")
    assert own.status_code == 200 and "Tomatoes and lemon trees grow there." in own.text
    queue = console_as(STEWARD).get("/review?source=feedback")
    assert example.example_id[:12] in queue.text and f"/audits/{rid}" in queue.text
