"""What every page needs: the console's state, the session, who is logged in, role checks,
CSRF checks and rendering (Jinja2 with autoescape on, so data is never markup)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.engine import Engine

from services.common import roles
from services.common.config import Settings
from services.console.config import ConsoleSettings
from services.console.session import Sessions, User, csrf_matches

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ConsoleState:
    settings: Settings
    console: ConsoleSettings
    engine: Engine
    sessions: Sessions
    templates: Environment


def template_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else "–"
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * float(v):.1f}%"
    env.filters["num"] = lambda v, d=3: "–" if v is None else f"{float(v):.{d}f}"
    return env


def get_state(request: Request) -> ConsoleState:
    return request.app.state.console


def session_of(request: Request) -> dict[str, Any]:
    return request.state.session


def optional_user(request: Request, state: Annotated[ConsoleState, Depends(get_state)]
                  ) -> User | None:
    return state.sessions.user(session_of(request))


def require(role: roles.Role) -> Callable[..., User]:
    """A dependency: the logged-in user if their role is at least ``role``; anonymous users
    are sent to the login page, others get 403."""

    def dependency(request: Request,
                   user: Annotated[User | None, Depends(optional_user)]) -> User:
        if user is None:
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query
                                               else ""))
            raise HTTPException(status.HTTP_303_SEE_OTHER, "login required",
                                headers={"Location": f"/login?next={target}"})
        if not user.can(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this page needs the {role} role; you are {user.role}")
        return user

    return dependency


async def check_csrf(request: Request) -> None:
    """Every POST carries the session's token: a form field, or the header htmx sends."""
    given = request.headers.get("x-csrf-token")
    if given is None:
        form = await request.form()
        value = form.get("csrf")
        given = value if isinstance(value, str) else None
    if not csrf_matches(session_of(request), given):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "missing or wrong CSRF token; reload the page and try again")


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    state: ConsoleState = request.app.state.console
    session = session_of(request)
    user = state.sessions.user(session)
    keep = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "page"])
    body = state.templates.get_template(name).render(
        user=user, csrf=session["csrf"], path=request.url.path,
        page_query=f"{keep}&" if keep else "", **context)
    return HTMLResponse(body, status_code=status_code)


StateDep = Annotated[ConsoleState, Depends(get_state)]
ViewerDep = Annotated[User, Depends(require("viewer"))]
SmeDep = Annotated[User, Depends(require("sme"))]
StewardDep = Annotated[User, Depends(require("steward"))]
CsrfDep = Depends(check_csrf)
