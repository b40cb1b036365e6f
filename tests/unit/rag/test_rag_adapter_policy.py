"""Which adapter versions may answer whom."""

import pytest

from services.common.events import Principal
from services.rag.adapter_policy import (
    EVALUATOR_GROUP,
    AdapterNotServable,
    decide,
    versioned,
)

pytestmark = pytest.mark.unit
READER = Principal(id="r", groups=["employees"])
GATE = Principal(id="finetune-gate", groups=["employees", EVALUATOR_GROUP])


@pytest.mark.parametrize("adapter, parsed", [
    ("support@v3", ("support", 3)), ("support@3", ("support", 3)), ("support", None),
    ("sup/port@v1", None), (None, None), ("x@v", None)])
def test_versioned_names(adapter, parsed):
    assert versioned(adapter) == parsed


def test_a_promoted_version_answers_everyone():
    decide("support@v3", "promoted", READER)
    decide("support@v3", "promoted", GATE)


def test_a_candidate_answers_only_the_promotion_gate():
    decide("support@v4", "candidate", GATE)
    with pytest.raises(AdapterNotServable, match="candidate"):
        decide("support@v4", "candidate", READER)


@pytest.mark.parametrize("status, why", [("retired", "retired"),
                                         (None, "not in the adapter registry")])
def test_retired_or_unknown_versions_answer_no_one(status, why):
    for principal in (READER, GATE):
        with pytest.raises(AdapterNotServable, match=why):
            decide("support@v1", status, principal)
