"""Generated credentials of the local stack, one private file each under the state directory.

Nothing has a default password: the first ``customllm up`` generates one per identity
(``secrets.token_urlsafe``), later starts reuse them. Files are 0600 in a 0700 folder, so only
the owner of the state directory can act as the platform's identities. Services receive a
path to their own file (``CUSTOMLLM_KAFKA_PASSWORD_FILE``), never the value on a command line.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from services.common.kafka_auth import KafkaCredentials, password_file

ADMIN = "admin"
CONTROLLER = "controller"


def write_private(path: Path, text: str) -> None:
    """Create with 0600 from the start (no window in which the file is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def password_path(state_dir: Path, identity: str) -> Path:
    return password_file(state_dir, identity)


def ensure_password(state_dir: Path, identity: str) -> str:
    """The Kafka identity's password, generated on first use."""
    return ensure_secret(password_path(state_dir, identity))


def ensure_secret(path: Path) -> str:
    """The secret in ``path``, generated (URL-safe, 256 bits) on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(32)
    write_private(path, value)
    return value


def credentials_of(state_dir: Path, identity: str) -> KafkaCredentials:
    """A platform identity's SCRAM credential (every user but the admin lives in the cluster
    metadata and authenticates with SCRAM)."""
    if identity == ADMIN:
        return admin_credentials(state_dir)
    return KafkaCredentials(identity, ensure_password(state_dir, identity), "SCRAM-SHA-512")


ADMIN_MECHANISM = "PLAIN"  # defined in the broker's own config, not in the cluster metadata


def admin_credentials(state_dir: Path) -> KafkaCredentials:
    return KafkaCredentials(ADMIN, ensure_password(state_dir, ADMIN), ADMIN_MECHANISM)


def remove(state_dir: Path, identity: str) -> None:
    password_path(state_dir, identity).unlink(missing_ok=True)
