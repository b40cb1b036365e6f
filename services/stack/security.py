"""The local stack's identities: one Kafka user per service plus the local operator, each with
exactly the ACLs ``services.common.kafka_acl`` grants it. Run by ``customllm up`` (and the test
and benchmark stacks) after the broker starts; idempotent."""

from __future__ import annotations

from pathlib import Path

from services.common import kafka_provision
from services.common.kafka_acl import CLIENT_PREFIX, OPERATOR, SERVICE_GRANTS, SOURCE_PREFIX
from services.stack import local_secrets


def provision_local(state_dir: Path, bootstrap: str) -> dict[str, int]:
    """Identity → ACLs created now (0 everywhere on a second run)."""
    admin = local_secrets.admin_credentials(state_dir)
    client = kafka_provision.admin_client(bootstrap, admin)
    created: dict[str, int] = {}
    for identity in (*SERVICE_GRANTS, OPERATOR):
        password = local_secrets.ensure_password(state_dir, identity)
        created[identity] = kafka_provision.provision(client, identity, password)
    # Sources and clients approved earlier keep their grants in sync with the current list.
    for identity in kafka_provision.list_users(client):
        if identity.startswith((SOURCE_PREFIX, CLIENT_PREFIX)):
            created[identity] = kafka_provision.apply_grants(client, identity)
    kafka_provision.wait_until_accepted(
        bootstrap, local_secrets.credentials_of(state_dir, OPERATOR))
    return created


def service_env(state_dir: Path, identity: str) -> dict[str, str]:
    """What a worker process needs to prove it is ``identity``: a name and a file path."""
    return {"CUSTOMLLM_KAFKA_USERNAME": identity,
            "CUSTOMLLM_KAFKA_PASSWORD_FILE": str(local_secrets.password_path(state_dir, identity))}
