"""Creating Kafka users (SCRAM credentials) and applying their ACLs, with the admin identity.

Idempotent: applying twice changes nothing; ``missing_grants`` is what ``customllm doctor``
reports. Used by ``customllm up`` for the platform's own identities and by the steward's
``customllm sources`` and ``customllm clients`` commands.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from services.common import kafka_auth
from services.common.kafka_acl import Grant, grants_for
from services.common.kafka_auth import KafkaCredentials

SCRAM_ITERATIONS = 8192
_RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
              "cluster": ResourceType.BROKER}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {"read": AclOperation.READ, "write": AclOperation.WRITE,
               "create": AclOperation.CREATE, "describe": AclOperation.DESCRIBE,
               "describe_configs": AclOperation.DESCRIBE_CONFIGS, "alter": AclOperation.ALTER,
               "idempotent_write": AclOperation.IDEMPOTENT_WRITE}


def admin_client(bootstrap: str, admin: KafkaCredentials) -> AdminClient:
    return AdminClient(kafka_auth.client_config(bootstrap, creds=admin))


def principal(identity: str) -> str:
    return f"User:{identity}"


def bindings(identity: str, grants: Iterable[Grant]) -> list[AclBinding]:
    return [AclBinding(_RESOURCES[g.resource], g.name, _PATTERNS[g.pattern], principal(identity),
                       "*", _OPERATIONS[op], AclPermissionType.ALLOW)
            for g in grants for op in g.operations]


def upsert_user(client: AdminClient, identity: str, password: str) -> None:
    upsert = UserScramCredentialUpsertion(
        identity, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
        password.encode())
    for future in client.alter_user_scram_credentials([upsert]).values():
        future.result()


def delete_user(client: AdminClient, identity: str) -> None:
    deletion = UserScramCredentialDeletion(identity, ScramMechanism.SCRAM_SHA_512)
    for future in client.alter_user_scram_credentials([deletion]).values():
        try:
            future.result()
        except KafkaException as exc:
            if "RESOURCE_NOT_FOUND" not in str(exc) and "does not exist" not in str(exc):
                raise


def list_users(client: AdminClient) -> list[str]:
    described = client.describe_user_scram_credentials().result()
    return sorted(described)


def current_bindings(client: AdminClient, identity: str) -> list[AclBinding]:
    query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal(identity),
                             None, AclOperation.ANY, AclPermissionType.ANY)
    return list(client.describe_acls(query).result())


def _key(binding: AclBinding) -> tuple:
    return (binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
            binding.operation, binding.permission_type)


def missing_grants(client: AdminClient, identity: str) -> list[AclBinding]:
    have = {_key(b) for b in current_bindings(client, identity)}
    return [b for b in bindings(identity, grants_for(identity)) if _key(b) not in have]


def apply_grants(client: AdminClient, identity: str) -> int:
    """Create the identity's missing ACLs; return how many were created."""
    missing = missing_grants(client, identity)
    if missing:
        for future in client.create_acls(missing).values():
            future.result()
    return len(missing)


def revoke_all(client: AdminClient, identity: str) -> int:
    query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal(identity),
                             None, AclOperation.ANY, AclPermissionType.ANY)
    deleted = 0
    for future in client.delete_acls([query]).values():
        deleted += len(future.result())
    return deleted


def provision(client: AdminClient, identity: str, password: str) -> int:
    """User plus its ACLs; the number of ACLs created."""
    upsert_user(client, identity, password)
    return apply_grants(client, identity)


def wait_until_accepted(bootstrap: str, creds: KafkaCredentials, timeout_s: float = 30.0) -> None:
    """A new SCRAM credential reaches the broker through the metadata log, a moment after the
    admin call returns; callers that connect at once wait here instead of failing."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            AdminClient(kafka_auth.client_config(bootstrap, creds=creds)).list_topics(timeout=3)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
