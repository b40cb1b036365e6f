"""A console app on the test stack's Postgres, and logged-in browsers-without-a-browser
(TestClient keeps the session cookie like a browser does)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from services.common.config import get_settings
from services.common.events import Principal
from services.console.app import create_app
from services.console.config import ConsoleSettings
from tests.support.keys import key_for

VIEWER = Principal(id="vera-viewer", groups=["employees"], clearance="internal")
OTHER_VIEWER = Principal(id="otto-viewer", groups=["employees"], clearance="internal")
SME = Principal(id="sita-sme", groups=["employees", "smes"], clearance="internal")
STEWARD = Principal(id="stan-steward", groups=["stewards"], clearance="restricted")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture(scope="module")
def console_app(stack):
    return create_app(get_settings(), ConsoleSettings())


@pytest.fixture
def browser(console_app):
    """A factory: a new cookie jar logged in as a principal (or anonymous with None)."""
    opened: list[TestClient] = []

    def open_as(principal: Principal | None) -> TestClient:
        client = TestClient(console_app, follow_redirects=False)
        opened.append(client)
        if principal is not None:
            token = csrf_of(client.get("/login").text)
            response = client.post("/login", data={"credential": key_for(principal),
                                                   "csrf": token, "next": "/catalog"})
            assert response.status_code == 303, response.text
        return client

    yield open_as
    for client in opened:
        client.close()


def post_form(client: TestClient, page: str, action: str, data: dict[str, str],
              **kwargs: object):
    """Submit a form the way a browser does: with the CSRF token of the page it is on."""
    return client.post(action, data={**data, "csrf": csrf_of(client.get(page).text)}, **kwargs)
