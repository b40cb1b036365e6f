"""A console app on the test stack's Postgres, and logged-in browsers-without-a-browser
(TestClient keeps the session cookie like a browser does)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.common.config import get_settings
from services.common.events import Principal
from services.console.app import create_app
from services.console.config import ConsoleSettings
from tests.support.console_client import csrf_of, signed_in

VIEWER = Principal(id="vera-viewer", groups=["employees"], clearance="internal")
OTHER_VIEWER = Principal(id="otto-viewer", groups=["employees"], clearance="internal")
SME = Principal(id="sita-sme", groups=["employees", "smes"], clearance="internal")
STEWARD = Principal(id="stan-steward", groups=["stewards"], clearance="restricted")
__all__ = ["OTHER_VIEWER", "SME", "STEWARD", "VIEWER", "csrf_of", "post_form"]


@pytest.fixture(scope="module")
def console_app(stack):
    return create_app(get_settings(), ConsoleSettings())


@pytest.fixture
def browser(console_app):
    """A factory: a new cookie jar logged in as a principal (or anonymous with None)."""
    opened: list[TestClient] = []

    def open_as(principal: Principal | None) -> TestClient:
        client = (TestClient(console_app, follow_redirects=False) if principal is None
                  else signed_in(console_app, principal, next_page="/catalog"))
        opened.append(client)
        return client

    yield open_as
    for client in opened:
        client.close()


def post_form(client: TestClient, page: str, action: str, data: dict[str, str],
              **kwargs: object):
    """Submit a form the way a browser does: with the CSRF token of the page it is on."""
    return client.post(action, data={**data, "csrf": csrf_of(client.get(page).text)}, **kwargs)
