"""The console application: sessions, login and logout, error pages, and the page routers.

Run it with ``python -m services.console`` or ``customllm console``. It reads the platform's
tables directly (catalog, audits, examples, runs, registry) and writes only what a person
decides (reviews, promotions, retirements), each recorded with who and why. It imports no
model library and no other service package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Form, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from services.common import identity
from services.common.config import Settings, get_settings
from services.common.db import make_engine
from services.console.config import ConsoleSettings
from services.console.deps import (
    TEMPLATES,
    ConsoleState,
    CsrfDep,
    render,
    session_of,
    template_environment,
)
from services.console.pages import adapters, audits, catalog, evaluations, guardrails, review
from services.console.session import Sessions, load_secret

STATIC = TEMPLATES.parent / "static"


def create_app(settings: Settings | None = None,
               console: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    console = console or ConsoleSettings()
    secret_path = console.session_secret_file or (settings.state_path / "secrets" /
                                                  "console-session.key")
    sessions = Sessions(load_secret(secret_path), console.session_max_age_s,
                        console.secure_cookie, identity.authenticator_from_settings(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.console.engine.dispose()

    app = FastAPI(title="customllm console", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = ConsoleState(settings, console, make_engine(settings.sqlalchemy_url),
                                     sessions, template_environment())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.middleware("http")(_session_middleware(sessions))
    for module in (catalog, audits, review, guardrails, evaluations, adapters):
        app.include_router(module.router)
    _auth_routes(app)
    _error_pages(app)
    return app


def _session_middleware(sessions: Sessions
                        ) -> Callable[[Request, Callable[[Request], Awaitable[Response]]],
                                      Awaitable[Response]]:
    """Every request gets a session (anonymous ones too: the login form needs a CSRF token);
    a handler that replaces ``request.state.session`` gets a new cookie."""

    async def middleware(request: Request,
                         call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        original, fresh = sessions.read(request)
        request.state.session = original
        response = await call_next(request)
        current = request.state.session
        if current is not original or fresh:
            sessions.write(response, current)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
        return response

    return middleware


def _auth_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/catalog", status.HTTP_303_SEE_OTHER)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login")
    def login_form(request: Request, next: str = "/catalog") -> Response:  # noqa: A002
        return render(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/login", dependencies=[CsrfDep])
    def login(request: Request, credential: Annotated[str, Form(max_length=8192)],
              next: Annotated[str, Form()] = "/catalog") -> Response:  # noqa: A002
        state: ConsoleState = request.app.state.console
        try:
            request.state.session = state.sessions.login(credential)
        except identity.Unauthenticated:
            return render(request, "login.html", status_code=401, next=_safe_next(next),
                          error="That API key or token is not valid (unknown, revoked or "
                          "expired).")
        return RedirectResponse(_safe_next(next), status.HTTP_303_SEE_OTHER)

    @app.post("/logout", dependencies=[CsrfDep])
    def logout(request: Request) -> RedirectResponse:
        request.state.session = {"csrf": session_of(request)["csrf"]}
        return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


def _safe_next(target: str) -> str:
    """Only a path on this site: a login link must not bounce a user to another host."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/catalog"
    return target


def _error_pages(app: FastAPI) -> None:
    # Starlette's class, not FastAPI's subclass: the router's own 404 and 405 (no such page,
    # wrong method) are raised as Starlette's and must get the same HTML page as the handlers'.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == status.HTTP_303_SEE_OTHER and exc.headers:
            return RedirectResponse(exc.headers["Location"], status.HTTP_303_SEE_OTHER)
        return render(request, "error.html", status_code=exc.status_code,
                      code=exc.status_code, message=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                             for e in exc.errors())
        return render(request, "error.html", status_code=422, code=422, message=problems)
