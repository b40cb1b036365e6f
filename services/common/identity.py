"""Proving who asks: API keys (stored hashed) and OIDC/JWT bearer tokens, turned into a
principal by the first stage that reads them (the gateway at its edge, the input guardrail on
the bus). A principal written into a message by a client is never believed.

API keys live in a YAML file that holds only their SHA-256 hashes::

    keys:
      - id: alice-laptop                 # a name for the key, not a secret
        sha256: 9f86d08...               # hashlib.sha256(key).hexdigest()
        principal: {id: alice, groups: [finance], clearance: confidential}
        domains: [default, finance]      # policy domains this key may use; absent: any
        revoked: false

The file is re-read when it changes, so ``customllm keys revoke`` takes effect on the next
request of every process without a restart. JWTs are verified against the issuer's JWKS
(a URL, or a file for offline deployments) with issuer, audience and expiry checked; groups and
clearance come from configurable claims.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.config import Settings
from services.common.events import Principal, PrivacyClass
from services.common.exceptions import CustomLLMError

KEY_PREFIX = "cllm_"
CLEARANCES: tuple[str, ...] = ("public", "internal", "confidential", "restricted")


class Unauthenticated(CustomLLMError):
    """No credential, or one that does not verify (unknown, revoked, expired, bad signature)."""


class Forbidden(CustomLLMError):
    """A verified identity asked for something its credential does not allow."""


@dataclass(frozen=True)
class Identity:
    principal: Principal
    method: str  # "api_key" or "jwt"
    key_id: str
    domains: frozenset[str] | None = None  # None: any policy domain

    def domain_for(self, requested: str | None, default: str = "default") -> str:
        """The policy domain of a request: the one asked for, if this credential allows it."""
        if requested is None:
            if self.domains is None or default in self.domains:
                return default
            return sorted(self.domains)[0]
        if self.domains is not None and requested not in self.domains:
            raise Forbidden(f"credential {self.key_id!r} may not use policy domain "
                            f"{requested!r} (allowed: {', '.join(sorted(self.domains))})")
        return requested


class ApiKeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    principal: Principal
    domains: list[str] | None = None
    revoked: bool = False


class ApiKeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[ApiKeyEntry] = Field(default_factory=list)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_key_file(path: Path) -> ApiKeyFile:
    if not path.exists():
        return ApiKeyFile()
    try:
        return ApiKeyFile.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise CustomLLMError(f"{path}: not a valid API key file: {exc}") from exc


def write_key_file(path: Path, data: ApiKeyFile) -> None:
    """Atomic (write then rename) so a reader never sees half a file; private to its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data.model_dump(mode="json", exclude_none=True), handle, sort_keys=False)
    os.replace(tmp, path)


def add_key(path: Path, key_id: str, principal: Principal,
            domains: Iterable[str] | None = None, key: str | None = None) -> str:
    """Register a new key (or replace the one with this id); return the plaintext, which is
    shown once and never stored."""
    key = key or new_api_key()
    with _editing(path):
        data = read_key_file(path)
        kept = [entry for entry in data.keys if entry.id != key_id]
        kept.append(ApiKeyEntry(id=key_id, sha256=hash_key(key), principal=principal,
                                domains=sorted(set(domains)) if domains else None))
        write_key_file(path, ApiKeyFile(keys=kept))
    return key


def revoke_key(path: Path, key_id: str) -> bool:
    with _editing(path):
        data = read_key_file(path)
        found = False
        entries = []
        for entry in data.keys:
            if entry.id == key_id and not entry.revoked:
                entry, found = entry.model_copy(update={"revoked": True}), True
            entries.append(entry)
        if found:
            write_key_file(path, ApiKeyFile(keys=entries))
    return found


@contextlib.contextmanager
def _editing(path: Path) -> Iterator[None]:
    """One writer at a time across processes: two ``customllm keys add`` (or a launcher and a
    CLI) reading and rewriting the file together would each drop the other's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass
class KeyStore:
    """Hash → entry, reloaded when the file changes (replaced, resized or touched)."""

    path: Path
    _by_hash: dict[str, ApiKeyEntry] = field(default_factory=dict)
    _stamp: tuple[int, int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            # The inode too: every write replaces the file, and two writes of the same size
            # inside one tick of the file system's clock would otherwise look unchanged.
            stamp: tuple[int, int, int] | None = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and (stamp is not None or not self._by_hash):
            return
        entries = read_key_file(self.path).keys if stamp is not None else []
        self._by_hash = {entry.sha256: entry for entry in entries}
        self._stamp = stamp

    def verify(self, key: str) -> Identity:
        return self.verify_digest(hash_key(key))

    def verify_digest(self, digest: str) -> Identity:
        """The identity of the key with this SHA-256, checked against the current file: a
        web session keeps the digest, never the key, and is re-checked on every request so a
        revocation ends it at once."""
        with self._lock:
            self._refresh()
            entry = self._by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            raise Unauthenticated("unknown API key")
        if entry.revoked:
            raise Unauthenticated(f"API key {entry.id!r} is revoked")
        domains = frozenset(entry.domains) if entry.domains is not None else None
        return Identity(entry.principal, "api_key", entry.id, domains)


@dataclass
class JwtVerifier:
    """OIDC access/ID tokens: signature by the issuer's JWKS, then iss, aud, exp, nbf."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    groups_claim: str = "groups"
    clearance_claim: str = "clearance"
    default_clearance: str = "public"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    _client: Any = None

    def _signing_key(self, token: str) -> Any:  # noqa: ANN401 - PyJWT's key object
        import jwt

        if self.jwks_file is not None:
            jwks = jwt.PyJWKSet.from_json(Path(self.jwks_file).read_text())
            kid = jwt.get_unverified_header(token).get("kid")
            for key in jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key
            raise Unauthenticated(f"token signed with unknown key {kid!r}")
        if self._client is None:
            self._client = jwt.PyJWKClient(str(self.jwks_url), cache_keys=True, lifespan=300)
        return self._client.get_signing_key_from_jwt(token).key

    def verify(self, token: str) -> Identity:
        import jwt

        try:
            claims = jwt.decode(token, self._signing_key(token), algorithms=list(self.algorithms),
                                audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        groups = claims.get(self.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        clearance = claims.get(self.clearance_claim, self.default_clearance)
        if clearance not in CLEARANCES:
            clearance = self.default_clearance
        principal = Principal(id=str(claims["sub"]), groups=[str(g) for g in groups][:200],
                              clearance=clearance)
        return Identity(principal, "jwt", f"jwt:{claims['iss']}")


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and not credential.startswith(KEY_PREFIX)


@dataclass
class Authenticator:
    """API keys and (when configured) OIDC tokens behind one call."""

    keys: KeyStore
    jwt: JwtVerifier | None = None

    def verify(self, credential: str | None) -> Identity:
        if not credential:
            raise Unauthenticated("no credential: send an API key or a bearer token")
        credential = credential.strip()
        if credential.lower().startswith("bearer "):
            credential = credential[7:].strip()
        if self.jwt is not None and looks_like_jwt(credential):
            return self.jwt.verify(credential)
        return self.keys.verify(credential)


def key_file_path(settings: Settings) -> Path:
    return settings.api_keys_file or settings.state_path / "secrets" / "api-keys.yaml"


def own_key_path(state_dir: Path, name: str) -> Path:
    """Where the local stack keeps the plaintext of a key it issued to itself (operator,
    finetune gate), 0600: the only copy, so local tools can ask without a copy-paste."""
    return state_dir / "secrets" / "api-keys" / f"{name}.key"


def authenticator_from_settings(settings: Settings) -> Authenticator:
    verifier = None
    if settings.oidc_issuer:
        if not settings.oidc_audience or not (settings.oidc_jwks_url or settings.oidc_jwks_file):
            raise CustomLLMError("OIDC needs CUSTOMLLM_OIDC_AUDIENCE and a JWKS URL or file")
        verifier = JwtVerifier(settings.oidc_issuer, settings.oidc_audience,
                               settings.oidc_jwks_url, settings.oidc_jwks_file,
                               settings.oidc_groups_claim, settings.oidc_clearance_claim,
                               settings.oidc_default_clearance)
    return Authenticator(KeyStore(key_file_path(settings)), verifier)


def own_credential(settings: Settings, name: str = "operator") -> str | None:
    """This process's credential for asking questions: CUSTOMLLM_API_KEY, the file named by
    CUSTOMLLM_API_KEY_FILE, or the local stack's key for ``name``."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    path = settings.api_key_file or own_key_path(settings.state_path, name)
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def clearance_of(value: str) -> PrivacyClass:
    if value not in CLEARANCES:
        raise ValueError(f"clearance must be one of {', '.join(CLEARANCES)}")
    return value  # type: ignore[return-value]
