"""Signed hand-offs: who signed, what, when, and only once."""

import json

import pytest

from services.common import handoff
from services.common.events import Principal, RagRequest, Screening

pytestmark = pytest.mark.unit
NOW = 1_800_000_000.0


@pytest.fixture
def keys():
    guardrails, rag = handoff.new_key("guardrails", "g1"), handoff.new_key("rag", "r1")
    trusted = {k.kid: handoff.TrustedKey(k.kid, k.signer, k.private_key.public_key())
               for k in (guardrails, rag)}
    return guardrails, rag, trusted


def _screened() -> dict:
    request = RagRequest(request_id="r-1", reply_to="rag.replies.gateway", question="q?",
                         principal=Principal(id="alice", clearance="internal"),
                         screening=Screening(policy_version="default@abc"))
    return request.to_dict()


def test_a_signed_message_verifies(keys):
    guardrails, _, trusted = keys
    signed = handoff.sign(_screened(), "screened-request", guardrails, now=NOW)
    wire = json.loads(json.dumps(signed))  # what the consumer parses
    assert handoff.verify(wire, "screened-request", "guardrails", trusted, 900,
                          now=NOW + 1) == NOW


@pytest.mark.parametrize("field, value", [
    ("question", "a different question"),
    ("principal", {"id": "mallory", "groups": ["security-team"], "clearance": "restricted"}),
    ("screening", {"policy_version": "default@abc", "marked_chunks": "allow"}),
    ("reply_to", "rag.replies.mallory"),
])
def test_any_altered_field_is_refused(keys, field, value):
    guardrails, _, trusted = keys
    signed = handoff.sign(_screened(), "screened-request", guardrails, now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="altered or forged"):
        handoff.verify({**signed, field: value}, "screened-request", "guardrails", trusted,
                       900, now=NOW)


def test_unsigned_is_refused(keys):
    with pytest.raises(handoff.HandoffRejected, match="unsigned"):
        handoff.verify(_screened(), "screened-request", "guardrails", keys[2], 900, now=NOW)


def test_the_wrong_signer_or_kind_is_refused(keys):
    guardrails, rag, trusted = keys
    by_rag = handoff.sign(_screened(), "screened-request", rag, now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="only 'guardrails'"):
        handoff.verify(by_rag, "screened-request", "guardrails", trusted, 900, now=NOW)
    as_draft = handoff.sign(_screened(), "draft", guardrails, now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="not a 'screened-request'"):
        handoff.verify(as_draft, "screened-request", "guardrails", trusted, 900, now=NOW)


def test_a_self_declared_signer_with_its_own_key_is_refused(keys):
    _, _, trusted = keys
    forger = handoff.new_key("guardrails", "g1")  # same names, different key
    forged = handoff.sign(_screened(), "screened-request", forger, now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="altered or forged"):
        handoff.verify(forged, "screened-request", "guardrails", trusted, 900, now=NOW)
    unknown = handoff.sign(_screened(), "screened-request", handoff.new_key("guardrails", "x"),
                           now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="unknown signing key"):
        handoff.verify(unknown, "screened-request", "guardrails", trusted, 900, now=NOW)


def test_old_messages_are_refused(keys):
    guardrails, _, trusted = keys
    signed = handoff.sign(_screened(), "screened-request", guardrails, now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="older than"):
        handoff.verify(signed, "screened-request", "guardrails", trusted, 900, now=NOW + 901)


def test_a_replay_inside_the_window_is_refused_and_the_guard_forgets_old_entries():
    guard = handoff.ReplayGuard(max_age_s=60)
    guard.check("r-1", NOW, now=NOW)
    with pytest.raises(handoff.HandoffRejected, match="replayed"):
        guard.check("r-1", NOW, now=NOW + 1)
    guard.check("r-2", NOW, now=NOW + 1)
    guard.check("r-1", NOW + 100, now=NOW + 100)  # a new signature of the same id later
    assert "r-1@1800000000.0" not in guard._seen  # expired entries were dropped


def test_rotation_accepts_both_keys_while_both_are_trusted(keys, tmp_path):
    old, _, _ = keys
    new = handoff.new_key("guardrails", "g2")
    trust = tmp_path / "trusted.json"
    trust.write_text(json.dumps({"keys": [handoff.public_entry(old)]}))
    store = handoff.TrustStore(trust)
    signed_new = handoff.sign(_screened(), "screened-request", new, now=NOW)
    with pytest.raises(handoff.HandoffRejected):
        handoff.verify(signed_new, "screened-request", "guardrails", store.keys(), 900, now=NOW)
    trust.write_text(json.dumps({"keys": [handoff.public_entry(old),
                                          handoff.public_entry(new)]}))
    for key in (old, new):  # during the rotation both verify, without a restart
        signed = handoff.sign(_screened(), "screened-request", key, now=NOW)
        handoff.verify(signed, "screened-request", "guardrails", store.keys(), 900, now=NOW)


def test_key_files_round_trip(tmp_path, keys):
    guardrails = keys[0]
    path = tmp_path / "g.key"
    path.write_text(handoff.private_pem(guardrails))
    loaded = handoff.load_signing_key(path)
    assert (loaded.kid, loaded.signer) == ("g1", "guardrails")
    signed = handoff.sign(_screened(), "screened-request", loaded, now=NOW)
    handoff.verify(signed, "screened-request", "guardrails", keys[2], 900, now=NOW)
