"""The shared processor checks a signed hand-off once, before ``process``: a forged or replayed
message never reaches the stage, and a retry after a bug is not mistaken for a replay."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.common import handoff
from services.common.events import Principal, RagRequest, Screening
from services.common.processor import (
    DeadLetter,
    Done,
    Emit,
    Inbound,
    RetryPolicy,
    StreamProcessor,
    admit,
    decide,
    done,
)
from services.common.topics import RAG_SCREENED

pytestmark = pytest.mark.unit


@pytest.fixture
def keys(tmp_path):
    guardrails, rag = handoff.new_key("guardrails", "g1"), handoff.new_key("rag", "r1")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps({"keys": [handoff.public_entry(k) for k in (guardrails, rag)]}))
    verifier = handoff.Verifier("screened-request", "guardrails", handoff.TrustStore(trust),
                                900, handoff.ReplayGuard(900))
    return guardrails, rag, verifier


def _request(request_id: str = "r-1") -> RagRequest:
    return RagRequest(request_id=request_id, reply_to="rag.replies.gateway", question="q?",
                      principal=Principal(id="alice", clearance="internal"),
                      screening=Screening(policy_version="default@abc"))


def _inbound(value: bytes, offset: int = 0) -> Inbound:
    return Inbound(topic=RAG_SCREENED, partition=0, offset=offset, key=b"r-1", value=value)


def _processor(verifier, process=None, notices=()) -> StreamProcessor:
    async def echo(message: Inbound) -> Done:
        return done(Emit("out", None, json.dumps(message.payload).encode()))

    return StreamProcessor(service="test", source=RAG_SCREENED, dead_letters="dlq",
                           process=process or echo, on_dead_letter=lambda _m, _e: notices,
                           signed_by=verifier,
                           retry=RetryPolicy(unexpected_attempts=3, unexpected_wait_s=0))


def test_a_valid_signature_is_admitted_with_its_payload(keys):
    guardrails, _, verifier = keys
    signed = handoff.signed_json(_request(), "screened-request", guardrails)
    admitted = asyncio.run(admit(_processor(verifier), _inbound(signed)))
    assert isinstance(admitted, Inbound)
    assert admitted.payload is not None and admitted.payload["principal"]["id"] == "alice"


@pytest.mark.parametrize("make", [
    lambda g, r: _request().to_json(),  # unsigned
    lambda g, r: handoff.signed_json(_request(), "screened-request", r),  # the wrong signer
    lambda g, r: handoff.signed_json(_request(), "draft", g),  # the wrong kind
    lambda g, r: json.dumps({**json.loads(handoff.signed_json(_request(), "screened-request",
                                                              g)),
                             "principal": {"id": "mallory", "clearance": "restricted"}}
                            ).encode(),  # altered
])
def test_anything_but_a_valid_signature_is_dead_lettered_and_the_sender_told(keys, make):
    guardrails, rag, verifier = keys
    notice = Emit("notices", None, b"refused")
    called: list[Inbound] = []

    async def process(message: Inbound) -> Done:
        called.append(message)
        return done()

    outcome = asyncio.run(admit(_processor(verifier, process, (notice,)),
                                _inbound(make(guardrails, rag))))
    assert isinstance(outcome, DeadLetter)
    assert outcome.error.error_type == "unauthenticated"
    assert outcome.notify == (notice,)
    assert called == []


def test_a_second_delivery_is_a_replay(keys):
    guardrails, _, verifier = keys
    signed = handoff.signed_json(_request(), "screened-request", guardrails)
    processor = _processor(verifier)
    assert isinstance(asyncio.run(admit(processor, _inbound(signed))), Inbound)
    again = asyncio.run(admit(processor, _inbound(signed, offset=1)))
    assert isinstance(again, DeadLetter) and "replay" in again.error.reason


def test_a_retry_after_a_bug_is_not_taken_for_a_replay(keys):
    guardrails, _, verifier = keys
    attempts: list[int] = []

    async def flaky(message: Inbound) -> Done:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("a race that clears")
        return done(Emit("out", None, message.payload["request_id"].encode()))

    processor = _processor(verifier, flaky)
    admitted = asyncio.run(admit(processor, _inbound(
        handoff.signed_json(_request(), "screened-request", guardrails))))
    outcome = asyncio.run(decide(processor, admitted))
    assert isinstance(outcome, Done) and outcome.emits[0].value == b"r-1"
    assert len(attempts) == 2


def test_an_oversized_message_is_refused_before_its_signature_is_read(keys):
    guardrails, _, verifier = keys
    signed = handoff.signed_json(_request(), "screened-request", guardrails)
    processor = StreamProcessor(service="test", source=RAG_SCREENED, dead_letters="dlq",
                                process=_processor(verifier).process, signed_by=verifier,
                                max_bytes=len(signed) - 1)
    outcome = asyncio.run(admit(processor, _inbound(signed)))
    assert isinstance(outcome, DeadLetter) and outcome.error.error_type == "too_large"
