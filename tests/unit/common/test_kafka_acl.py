"""The ACL matrix: least privilege, stated as properties of the data."""

import pytest

from services.common import kafka_acl
from services.common import topics as t

pytestmark = pytest.mark.unit


def _can(identity: str, operation: str, topic: str) -> bool:
    for grant in kafka_acl.grants_for(identity):
        if grant.resource != "topic" or operation not in grant.operations:
            continue
        if grant.name == topic or (grant.pattern == "prefixed" and topic.startswith(grant.name)):
            return True
    return False


EVERYONE = [*kafka_acl.SERVICE_GRANTS, kafka_acl.OPERATOR, "source-wiki", "client-app-a",
            "stranger"]


@pytest.mark.parametrize("topic, writers", [
    (t.DOCS_CHANGES, {"source-wiki"}),
    (t.RAG_SCREENED, {"guardrails"}),
    (t.RAG_DRAFTS, {"rag"}),
    ("rag.replies.client-app-a", {"guardrails"}),
    (t.RAG_REQUESTS, {"gateway", "finetune", "operator", "client-app-a"}),
    # The finetune worker's retraining policy queues automatic jobs (issue 17, item 3).
    (t.FINETUNE_REQUESTS, {"operator", "finetune"}),
    (t.RAG_FEEDBACK, {"gateway", "operator", "client-app-a"}),
    (t.RAG_FEEDBACK_DLQ, {"audit"}),
])
def test_who_may_write(topic, writers):
    assert {i for i in EVERYONE if _can(i, "write", topic)} == writers


@pytest.mark.parametrize("topic, readers", [
    # The audit recorder reads the query path to keep each answer's audit record.
    (t.RAG_DRAFTS, {"guardrails", "audit"}),
    (t.RAG_SCREENED, {"rag", "audit"}),
    (t.RAG_FEEDBACK, {"audit"}),
    (t.FINETUNE_REQUESTS, {"finetune"}),
    ("rag.replies.client-app-a", {"client-app-a"}),
    ("rag.replies.gateway", {"gateway"}),
    (t.RAG_REPLIES, set()),
])
def test_who_may_read(topic, readers):
    assert {i for i in EVERYONE if _can(i, "read", topic)} == readers


def test_unknown_identities_get_nothing():
    assert kafka_acl.grants_for("stranger") == []


@pytest.mark.parametrize("name, ok", [("wiki", True), ("team_a.docs", True), ("", False),
                                      ("../x", False), ("-x", False), ("a b", False)])
def test_identity_names(name, ok):
    assert kafka_acl.valid_name(name) is ok
