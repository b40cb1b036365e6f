"""Signed session cookies, CSRF tokens and who is logged in.

The cookie holds no secret: for an API key, its SHA-256 (checked against the key file on every
request, so a revoked key ends the session at once); for an OIDC token, the principal it proved
and the token's expiry (the session ends with the token). It is signed with the console's key
(itsdangerous, HMAC-SHA1 over a timestamped payload), HttpOnly and SameSite=Strict; every POST
must also carry the session's CSRF token, which a page from another site cannot read.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from services.common import identity, roles
from services.common.events import Principal

COOKIE = "customllm_console"


@dataclass(frozen=True)
class User:
    principal: Principal
    role: roles.Role
    method: str

    @property
    def id(self) -> str:
        return self.principal.id

    def can(self, role: roles.Role) -> bool:
        return roles.at_least(self.role, role)


def load_secret(path: Path) -> bytes:
    """The signing key, created 0600 on first use; every console replica must share it."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another replica made it first: use theirs
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key


class Sessions:
    def __init__(self, secret: bytes, max_age_s: int, secure: bool,
                 authenticator: identity.Authenticator) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="customllm-console-session")
        self.max_age_s = max_age_s
        self.secure = secure
        self.authenticator = authenticator

    def read(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The session and whether it is new (no cookie, or one that is forged or expired:
        the response must then set a cookie for the new one)."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self.serializer.loads(raw, max_age=self.max_age_s)
                if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                    return data, False
            except BadSignature:
                pass
        return {"csrf": secrets.token_urlsafe(32)}, True

    def write(self, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(COOKIE, self.serializer.dumps(data), max_age=self.max_age_s,
                            httponly=True, samesite="strict", secure=self.secure, path="/")

    def login(self, credential: str) -> dict[str, Any]:
        """A fresh session (new CSRF token: no fixation) for a credential that verifies;
        :class:`identity.Unauthenticated` otherwise."""
        who = self.authenticator.verify(credential)
        data: dict[str, Any] = {"csrf": secrets.token_urlsafe(32), "method": who.method}
        if who.method == "api_key":
            data["digest"] = identity.hash_key(credential.strip())
        else:
            import jwt

            claims = jwt.decode(credential, options={"verify_signature": False})
            data["principal"] = who.principal.model_dump(mode="json")
            data["exp"] = int(claims.get("exp", time.time() + self.max_age_s))
        return data

    def user(self, data: dict[str, Any]) -> User | None:
        """Who this session belongs to now, or None (anonymous, revoked, expired)."""
        try:
            if data.get("method") == "api_key" and isinstance(data.get("digest"), str):
                principal = self.authenticator.keys.verify_digest(data["digest"]).principal
            elif data.get("method") == "jwt" and data.get("exp", 0) > time.time():
                principal = Principal.model_validate(data["principal"])
            else:
                return None
        except (identity.Unauthenticated, ValueError):
            return None
        return User(principal, roles.role_for(principal.groups), str(data["method"]))


def csrf_matches(session: dict[str, Any], given: str | None) -> bool:
    expected = session.get("csrf")
    return bool(given) and isinstance(expected, str) and hmac.compare_digest(expected, given)
