"""The JSON Schemas in ``schemas/`` are the topic contracts: producers and consumers in other
languages read them, not our pydantic models, so the two must never drift apart."""

import hashlib
import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator

from services.common import contracts
from services.common.events import (
    ChunkWork,
    Citation,
    DlqRecord,
    DocChange,
    DocStatus,
    DocumentInfo,
    Principal,
    RagFilters,
    RagOptions,
    RagReply,
    RagRequest,
    WorkChunk,
)
from services.common.exceptions import ContractError
from services.common.topics import TOPICS

pytestmark = pytest.mark.unit

WHEN = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def _schema(name: str) -> dict:
    return json.loads((contracts.SCHEMA_DIR / f"{name}.json").read_text())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _events() -> list:
    para = "Refunds are issued within 14 days of the request."
    return [
        DocChange(doc_id="handbook/refunds.md", version=1_741_944_413_000_000, op="upsert",
                  content=f"# Refunds\n\n{para}", content_type="text/markdown",
                  title="Refunds", source="wiki", uri="file:///srv/handbook/refunds.md",
                  license="CC-BY-4.0", privacy_class="confidential", acl=["team:support"],
                  lineage={"publisher": "customllm publish"}, metadata={"owner": "ana"},
                  event_time=WHEN),
        DocChange(doc_id="handbook/old.md", version=3, op="delete", event_time=WHEN),
        ChunkWork(doc_id="handbook/refunds.md", version=2, op="upsert",
                  content_hash=_sha(para),
                  document=DocumentInfo(content_type="text/markdown", title="Refunds",
                                        acl=["team:support"], privacy_class="confidential"),
                  chunks=[WorkChunk(chunk_id="c" * 32, ordinal=0, content_hash=_sha(para),
                                    text=para, word_count=9, heading_path=["Refunds"],
                                    embed=True)],
                  event_time=WHEN),
        ChunkWork(doc_id="handbook/old.md", version=None, op="delete", event_time=WHEN),
        DocStatus(doc_id="handbook/refunds.md", version=2, state="indexed", service="embedder",
                  chunks_total=1, chunks_embedded=1, model_id="all-MiniLM-L6-v2",
                  event_time=WHEN, at=WHEN, lag_ms=12.5),
        DocStatus(doc_id="x", state="failed", service="ingest", reason="boom", at=WHEN),
        DlqRecord(original_topic="docs.changes", partition=2, offset=41, key="handbook/x.md",
                  payload="{not json", payload_bytes=9, error_type="malformed_json",
                  reason="value is not JSON", service="ingest", failed_at=WHEN),
        DlqRecord(original_topic="chunks.embed", key=None, payload=None,
                  payload_encoding="none", error_type="schema_violation",
                  reason="tombstone", service="embedder", failed_at=WHEN),
    ]


@pytest.mark.parametrize("event", _events(), ids=lambda e: f"{type(e).__name__}")
def test_serialised_events_validate_against_their_schema_file(event):
    # An independent validator on the emitted bytes, not the model's own validate hook.
    document = json.loads(event.to_json())
    errors = list(Draft202012Validator(_schema(event.schema_name)).iter_errors(document))
    assert errors == []
    assert document["schema_version"] == 1


def test_datetimes_are_serialised_as_utc_iso_strings():
    document = json.loads(_events()[0].to_json())
    assert document["event_time"] == "2026-03-14T09:26:53.589793Z"
    assert "source" in document and "content" in document


@pytest.mark.parametrize("model, nested", [
    (DocChange, None), (ChunkWork, None), (DocStatus, None), (DlqRecord, None),
    (DocumentInfo, ("chunk-work.v1", "document")), (WorkChunk, ("chunk-work.v1", "chunks")),
    (RagRequest, None), (RagReply, None), (Principal, ("rag-request.v1", "principal")),
    (RagOptions, ("rag-request.v1", "options")), (RagFilters, ("rag-request.v1", "options")),
])
def test_model_fields_and_schema_properties_match(model, nested):
    """A field added to a model but not the schema (or vice versa) breaks every consumer."""
    if nested is None:
        name = model.model_fields["schema_name"].default
        properties = _schema(name)["properties"]
        assert _schema(name)["title"] == model.__name__
    elif model is RagFilters:
        properties = _schema(nested[0])["properties"]["options"]["properties"]["filters"][
            "properties"]
    else:
        node = _schema(nested[0])["properties"][nested[1]]
        properties = node.get("items", node)["properties"]
    assert set(model.model_fields) - {"schema_name"} == set(properties)


def test_every_schema_file_compiles_as_draft_2020_12():
    names = contracts.schema_names()
    assert {"chunk-work.v1", "dlq-record.v1", "doc-change.v1", "doc-status.v1",
            "rag-request.v1", "rag-reply.v1"} <= set(names)
    for name in names:
        schema = _schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
        assert isinstance(contracts.validator(name), Draft202012Validator)


def test_every_topic_names_an_existing_schema():
    names = set(contracts.schema_names())
    assert {"docs.changes", "docs.changes.dlq", "chunks.embed", "chunks.embed.dlq",
            "docs.status", "rag.requests", "rag.replies"} <= {spec.name for spec in TOPICS}
    for spec in TOPICS:
        assert spec.schema in names, spec.name
        if spec.name.endswith(".dlq"):
            assert spec.schema == "dlq-record.v1"


VALID = {"doc_id": "a/b.md", "version": 7, "op": "upsert", "content": "hello"}


_INVALID_CHANGES = [
    ({"doc_id": "a", "op": "delete"}, "<root>: 'version' is a required property"),
    ({**VALID, "version": "7"}, "version: '7' is not of type 'integer'"),
    ({**VALID, "op": "merge"}, "op: 'merge' is not one of"),
    # An upsert needs exactly one of content, content_base64, content_ref.
    ({"doc_id": "a", "version": 1, "op": "upsert"}, "is not valid under any of the given schemas"),
    ({**VALID, "content_ref": "a.md"}, "is valid under each of"),
    ({"doc_id": "a", "version": 1, "op": "acl", "content": "x"}, "should not be valid under"),
    ({**VALID, "content_ref": "/etc/passwd"}, "content_ref: '/etc/passwd' does not match"),
    ({**VALID, "colour": "red"}, "<root>: Additional properties are not allowed ('colour'"),
    ({**VALID, "privacy_class": "secret"}, "privacy_class: 'secret' is not one of"),
    ({**VALID, "doc_id": "bad\x07id"}, "doc_id: 'bad\\x07id' does not match"),
    ({**VALID, "content_type": "image/png"}, "content_type: 'image/png' is not one"),
    ({**VALID, "content_type": "application/pdf"}, "should not be valid under"),  # PDF as text
    ({**VALID, "version": -1}, "version: -1 is less than the minimum of 0"),
    ({**VALID, "acl": [""]}, "acl/0: '' should be non-empty"),
]


@pytest.mark.parametrize("change, fragment", _INVALID_CHANGES)
def test_invalid_doc_changes_are_rejected_naming_the_path(change, fragment):
    with pytest.raises(ContractError) as caught:
        contracts.validate("doc-change.v1", change)
    assert str(caught.value).startswith("doc-change.v1: ")
    assert fragment in str(caught.value)


def test_the_fast_validator_agrees_with_jsonschema_on_every_case_above():
    # validate() trusts jsonschema-rs's acceptance: it must reject whatever jsonschema rejects.
    bad = [change for change, _ in _INVALID_CHANGES]
    fast = contracts.fast_validator("doc-change.v1")
    reference = contracts.validator("doc-change.v1")
    assert [fast.is_valid(c) for c in bad] == [False] * len(bad)
    assert [reference.is_valid(c) for c in bad] == [False] * len(bad)
    for event in _events():
        document = json.loads(event.to_json())
        assert contracts.fast_validator(event.schema_name).is_valid(document)


def _mutations(document: dict) -> list[dict]:
    """Broken copies of a valid document: each key dropped, retyped, nulled, given a control
    character or a trailing newline (where ``$`` differs between Python and ECMA regexes), a
    bad date-time, and an unknown key; the same one level down in objects and lists."""
    out: list[dict] = [{**document, "unexpected_field": 1}]
    for key, value in document.items():
        out.append({k: v for k, v in document.items() if k != key})
        for bad in (None, 12345, -1, 1.5, "x", "", [], {}, {"x": 1}, True):
            out.append({**document, key: bad})
        if isinstance(value, str):
            out += [{**document, key: value + "\n"}, {**document, key: value + "\x07"},
                    {**document, key: "2026-13-45T99:99:99Z"}]
        if isinstance(value, dict) and value:
            out += [{**document, key: inner} for inner in _mutations(value)]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out += [{**document, key: [inner, *value[1:]]} for inner in _mutations(value[0])]
    return out


def _reply() -> RagReply:
    citations = [Citation(n=i, chunk_id="c" * 32, doc_id=f"d{i}", text="A passage.", score=0.5)
                 for i in range(1, 4)]
    return RagReply(request_id="r-1", answer="Sixty days [1].", citations=citations,
                    latency_ms={"total": 12.5}, created_at=WHEN)


def test_the_fast_validator_never_accepts_what_jsonschema_rejects():
    # The one direction that would matter: validate() returns at the fast validator's "valid".
    events = [*_events(), _reply()]
    checked = rejected = 0
    for event in events:
        fast = contracts.fast_validator(event.schema_name)
        reference = contracts.validator(event.schema_name)
        for broken in _mutations(json.loads(event.to_json())):
            checked += 1
            if not reference.is_valid(broken):
                rejected += 1
                assert not fast.is_valid(broken), (event.schema_name, broken)
    assert checked > 1000 and rejected > 500


def test_valid_payloads_pass_and_delete_needs_no_content():
    contracts.validate("doc-change.v1", VALID)
    contracts.validate("doc-change.v1", {"doc_id": "a", "version": 0, "op": "delete"})


def test_every_violation_is_reported_in_path_order():
    with pytest.raises(ContractError) as caught:
        contracts.validate("doc-change.v1", {"doc_id": "", "version": "x", "op": "upsert",
                                             "content": 1})
    message = str(caught.value)
    assert message.index("content:") < message.index("doc_id:") < message.index("version:")


def test_to_json_refuses_an_event_that_breaks_its_schema():
    # The model allows any int; the schema says versions are never negative.
    with pytest.raises(ContractError, match="version: -5 is less than the minimum"):
        DocChange(doc_id="a", version=-5, op="delete").to_json()
    chunk = WorkChunk(chunk_id="c", ordinal=0, content_hash="not-a-sha", text="t",
                      word_count=1, embed=True)
    with pytest.raises(ContractError, match="chunks/0/content_hash"):
        ChunkWork(doc_id="a", version=1, op="upsert", chunks=[chunk]).to_json()


def test_a_malformed_event_time_is_rejected():
    with pytest.raises(ContractError, match="event_time"):
        contracts.validate("doc-change.v1", {"doc_id": "a", "version": 1, "op": "delete",
                                             "event_time": "yesterday"})
