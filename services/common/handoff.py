"""Signed hand-offs between stages: a stage believes a message only if the stage that is
allowed to produce it signed it.

The input guardrail signs each screened request (``rag.screened``: the derived principal, the
screening directives and policy version, the screened question and history, the options and
the reply topic); the rag worker signs each draft (``rag.drafts``: the answer, its evidence and
the reply topic). The receiving stage verifies the signature, the signer, the message kind,
its age and that it has not seen it before. Kafka ACLs already stop other identities from
writing these topics; the signatures keep that guarantee when an ACL is wrong, a credential
leaks or a message is copied from a log, and they tie the directives to the exact question.

Ed25519, not a shared HMAC key: the rag worker can verify the input stage's signature but not
forge one, and the other way round. Keys are named (``kid``); a verifier trusts every public
key listed in its trust file, so a key is rotated by adding the new public key, switching the
signer to the new private key, and removing the old public key once in-flight messages are
gone (see docs/security.md).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from services.common import contracts
from services.common.config import Settings
from services.common.events import Event
from services.common.exceptions import InvalidEvent

Kind = Literal["screened-request", "draft"]
FIELD = "handoff"


class HandoffRejected(InvalidEvent):
    """Unsigned, forged, altered, expired or replayed: never processed, always dead-lettered."""

    def __init__(self, reason: str) -> None:
        super().__init__("unauthenticated", reason)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    signer: str
    private_key: Ed25519PrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, signer={self.signer!r})"


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    signer: str
    public_key: Ed25519PublicKey


def canonical(payload: dict[str, Any]) -> bytes:
    """One byte string per JSON value, so signer and verifier hash the same thing whatever
    order or spacing the wire used."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _signed_bytes(payload: dict[str, Any], envelope: dict[str, Any]) -> bytes:
    body = {k: v for k, v in payload.items() if k != FIELD}
    return canonical({"body": body, "envelope": envelope})


def sign(payload: dict[str, Any], kind: Kind, key: SigningKey,
         now: float | None = None) -> dict[str, Any]:
    """The payload with its ``handoff`` field: kind, signer, key id, time and signature."""
    envelope = {"kind": kind, "signer": key.signer, "kid": key.kid,
                "issued_at": round(now if now is not None else time.time(), 3)}
    signature = key.private_key.sign(_signed_bytes(payload, envelope))
    return {**payload, FIELD: {**envelope,
                               "sig": base64.urlsafe_b64encode(signature).decode().rstrip("=")}}


def verify(payload: dict[str, Any], kind: Kind, signer: str, trusted: dict[str, TrustedKey],
           max_age_s: float, now: float | None = None) -> float:
    """Raise ``HandoffRejected`` unless ``signer`` signed exactly this payload as ``kind``
    less than ``max_age_s`` ago with a trusted key; return the signing time."""
    handoff = payload.get(FIELD)
    if not isinstance(handoff, dict):
        raise HandoffRejected(f"unsigned {kind}: no {FIELD} signature")
    envelope = {k: handoff.get(k) for k in ("kind", "signer", "kid", "issued_at")}
    if envelope["kind"] != kind:
        raise HandoffRejected(f"signature is for a {envelope['kind']!r}, not a {kind!r}")
    key = trusted.get(str(envelope["kid"]))
    if key is None:
        raise HandoffRejected(f"unknown signing key {envelope['kid']!r}")
    if key.signer != signer or envelope["signer"] != signer:
        raise HandoffRejected(f"signed by {envelope['signer']!r}; only {signer!r} may sign "
                              f"a {kind}")
    try:
        sig = base64.urlsafe_b64decode(str(handoff.get("sig", "")) + "==")
        key.public_key.verify(sig, _signed_bytes(payload, envelope))
    except (InvalidSignature, ValueError) as exc:
        raise HandoffRejected(f"bad signature on {kind}: altered or forged") from exc
    issued = envelope["issued_at"]
    if not isinstance(issued, int | float):
        raise HandoffRejected("signature has no issue time")
    age = (now if now is not None else time.time()) - float(issued)
    if age > max_age_s:
        raise HandoffRejected(f"{kind} signed {age:.0f}s ago, older than {max_age_s:.0f}s")
    if age < -60:
        raise HandoffRejected(f"{kind} signed in the future ({-age:.0f}s)")
    return float(issued)


class ReplayGuard:
    """Remembers what was accepted until it would have expired anyway, so a copy sent again
    inside the validity window is refused. Kafka's own redelivery after a crash starts a new
    process with an empty guard, so at-least-once delivery still gets through."""

    def __init__(self, max_age_s: float, max_entries: int = 200_000) -> None:
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, message_id: str, issued_at: float, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        key = f"{message_id}@{issued_at}"
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now
                                  or len(self._seen) > self._max_entries):
                self._seen.popitem(last=False)
            if key in self._seen:
                raise HandoffRejected(f"replayed message {message_id!r}: already processed")
            self._seen[key] = issued_at + self._max_age_s


# --- key files --------------------------------------------------------------------------------


def new_key(signer: str, kid: str | None = None) -> SigningKey:
    kid = kid or f"{signer}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    return SigningKey(kid, signer, Ed25519PrivateKey.generate())


def private_pem(key: SigningKey) -> str:
    """The key file: a comment line with signer and kid, then the PKCS#8 PEM."""
    pem = key.private_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    return f"# signer={key.signer} kid={key.kid}\n{pem}"


def load_signing_key(path: Path) -> SigningKey:
    text = Path(path).read_text()
    header = text.splitlines()[0] if text.startswith("#") else ""
    fields = dict(part.split("=", 1) for part in header.lstrip("# ").split() if "=" in part)
    if "signer" not in fields or "kid" not in fields:
        raise ValueError(f"{path}: first line must be '# signer=<name> kid=<id>'")
    pem = text[len(header):].lstrip().encode()
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return SigningKey(fields["kid"], fields["signer"], key)


def public_entry(key: SigningKey) -> dict[str, str]:
    raw = key.private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw)
    return {"kid": key.kid, "signer": key.signer,
            "public_key": base64.b64encode(raw).decode()}


def load_trusted(path: Path) -> dict[str, TrustedKey]:
    """``{"keys": [{"kid", "signer", "public_key"}]}``: every key listed is accepted."""
    data = json.loads(Path(path).read_text())
    trusted: dict[str, TrustedKey] = {}
    for entry in data.get("keys", []):
        raw = base64.b64decode(entry["public_key"])
        trusted[entry["kid"]] = TrustedKey(entry["kid"], entry["signer"],
                                           Ed25519PublicKey.from_public_bytes(raw))
    if not trusted:
        raise ValueError(f"{path}: no trusted keys")
    return trusted


# --- wiring from settings ---------------------------------------------------------------------


def keys_dir(state_dir: Path) -> Path:
    return state_dir / "secrets" / "handoff"


def signing_key_path(settings: Settings, signer: str) -> Path:
    return settings.handoff_signing_key_file or keys_dir(settings.state_path) / f"{signer}.key"


def trust_path(settings: Settings) -> Path:
    return settings.handoff_trust_file or keys_dir(settings.state_path) / "trusted.json"


class TrustStore:
    """The trusted public keys, re-read when the file changes: adding a key for a rotation
    (or removing a compromised one) needs no restart of the verifying stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._keys: dict[str, TrustedKey] = {}
        self._lock = threading.Lock()

    def keys(self) -> dict[str, TrustedKey]:
        with self._lock:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._stamp:
                self._keys, self._stamp = load_trusted(self.path), stamp
            return self._keys


@dataclass
class Verifier:
    """One stage's check of what it receives: signer, kind, age, and no second delivery
    inside the validity window."""

    kind: Kind
    signer: str
    trust: TrustStore
    max_age_s: float
    replays: ReplayGuard

    def check(self, payload: dict[str, Any], message_id: str) -> None:
        issued = verify(payload, self.kind, self.signer, self.trust.keys(), self.max_age_s)
        self.replays.check(message_id, issued)


def message_id(payload: dict[str, Any]) -> str:
    """What the replay guard remembers: both hand-off kinds are one per request."""
    return str(payload.get("request_id"))


def verifier_from_settings(settings: Settings, kind: Kind, signer: str) -> Verifier:
    return Verifier(kind, signer, TrustStore(trust_path(settings)), settings.handoff_max_age_s,
                    ReplayGuard(settings.handoff_max_age_s))


def signing_key_from_settings(settings: Settings, signer: str) -> SigningKey:
    key = load_signing_key(signing_key_path(settings, signer))
    if key.signer != signer:
        raise ValueError(f"{signing_key_path(settings, signer)} is {key.signer!r}'s key, "
                         f"not {signer!r}'s")
    return key


def signed_json(event: Event, kind: Kind, key: SigningKey) -> bytes:
    """The event's wire form with its signature, checked against the topic's schema."""
    payload = sign(event.to_dict(), kind, key)
    contracts.validate(event.schema_name, payload)
    return json.dumps(payload, ensure_ascii=False).encode()
