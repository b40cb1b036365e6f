"""A user's correction of a real answer, sent through the gateway, and the candidate example it
becomes in the review queue."""

from __future__ import annotations

import httpx

from services.common.events import Principal
from tests.support.keys import bearer
from tests.support.stack import wait_for


def correct(gateway_url: str, asker: Principal, request_id: str, correction: str) -> None:
    response = httpx.post(f"{gateway_url}/v1/feedback", headers=bearer(asker), timeout=30,
                          json={"request_id": request_id, "rating": -1,
                                "correction": correction})
    assert response.status_code == 202, response.text


def candidate_of(stack, request_id: str):
    """The review-queue example the feedback on ``request_id`` produced, once it exists."""
    return wait_for(lambda: stack.query(
        "SELECT example_id, review_status, source, tags, messages, privacy_class "
        "FROM sft_examples WHERE lineage->>'request_id' = :r", r=request_id), 120,
        what="the candidate example")[0]
