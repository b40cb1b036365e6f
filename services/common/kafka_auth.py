"""Who this process is on the Kafka bus, and the client settings that prove it.

Every Kafka client of the platform (confluent-kafka producers, consumers and admin clients,
and Faust's aiokafka) is configured from here, so no client can forget to authenticate. The
broker, not the message, is the authority on who wrote what: SASL/SCRAM proves the identity,
and the broker's ACLs (``services.common.kafka_acl``) say what that identity may do.

The credential is passed by reference: a username plus a password file (0600) written by
``customllm up`` for the local stack, or a Kubernetes/Compose secret mounted as a file. An
inline password (``CUSTOMLLM_KAFKA_PASSWORD``) also works, for platforms that inject secrets
as environment variables. Without an explicit username, a process on the local stack uses the
local operator identity whose password ``customllm up`` stored in the state directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.config import Settings, get_settings
from services.common.exceptions import CustomLLMError

LOCAL_OPERATOR = "operator"


class KafkaCredentialsMissing(CustomLLMError):
    """No credential could be found for the configured Kafka identity."""


@dataclass(frozen=True)
class KafkaCredentials:
    username: str
    password: str
    mechanism: str | None = None  # None: the configured one (CUSTOMLLM_KAFKA_SASL_MECHANISM)

    def __repr__(self) -> str:  # never print a password, even by accident in a log line
        return f"KafkaCredentials(username={self.username!r}, password='***')"


def secrets_dir(state_dir: Path) -> Path:
    """Where the local stack keeps the generated Kafka passwords (one file per identity)."""
    return state_dir / "secrets" / "kafka"


def password_file(state_dir: Path, identity: str) -> Path:
    return secrets_dir(state_dir) / f"{identity}.password"


def credentials(settings: Settings | None = None) -> KafkaCredentials | None:
    """This process's Kafka identity; None when the bus is configured without authentication
    (``CUSTOMLLM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT``, for brokers secured elsewhere)."""
    settings = settings or get_settings()
    if settings.kafka_security_protocol in ("PLAINTEXT", "SSL"):
        return None
    username = settings.kafka_username or LOCAL_OPERATOR
    if settings.kafka_password is not None:
        return KafkaCredentials(username, settings.kafka_password.get_secret_value())
    path = settings.kafka_password_file or password_file(settings.state_path, username)
    try:
        secret = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise KafkaCredentialsMissing(
            f"no Kafka password for identity {username!r}: {path} is not readable ({exc}); "
            "run `customllm up` for the local stack, or set CUSTOMLLM_KAFKA_USERNAME and "
            "CUSTOMLLM_KAFKA_PASSWORD_FILE") from exc
    if not secret:
        raise KafkaCredentialsMissing(f"Kafka password file {path} is empty")
    return KafkaCredentials(username, secret)


def client_config(bootstrap: str | None = None, settings: Settings | None = None,
                  creds: KafkaCredentials | None = None) -> dict[str, Any]:
    """librdkafka settings (confluent-kafka) for this process's identity, or ``creds``."""
    settings = settings or get_settings()
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap or settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_ssl_cafile is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    found = creds if creds is not None else credentials(settings)
    if found is not None:
        config.update({"sasl.mechanism": found.mechanism or settings.kafka_sasl_mechanism,
                       "sasl.username": found.username, "sasl.password": found.password})
    return config


def faust_credentials(settings: Settings) -> Any:  # noqa: ANN401 - faust's own credential type
    """The same identity for Faust (aiokafka underneath)."""
    import faust

    found = credentials(settings)
    if found is None:
        return None
    ssl_context = None
    if settings.kafka_security_protocol == "SASL_SSL":
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    return faust.SASLCredentials(username=found.username, password=found.password,
                                 mechanism=found.mechanism or settings.kafka_sasl_mechanism,
                                 ssl_context=ssl_context)


def private_group_id(purpose: str, settings: Settings | None = None) -> str:
    """A throw-away consumer group under this identity's own prefix (``customllm-<identity>``),
    the only groups its ACLs let it use."""
    import secrets

    found = credentials(settings or get_settings())
    who = found.username if found is not None else "anonymous"
    return f"customllm-{who}-{purpose}-{secrets.token_hex(6)}"
