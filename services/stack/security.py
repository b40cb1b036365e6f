"""The local stack's identities: one Kafka user per service plus the local operator, each with
exactly the ACLs ``services.common.kafka_acl`` grants it. Run by ``customllm up`` (and the test
and benchmark stacks) after the broker starts; idempotent."""

from __future__ import annotations

import json
from pathlib import Path

from services.common import handoff, identity, kafka_auth, kafka_provision
from services.common.config import Settings
from services.common.events import Principal
from services.common.kafka_acl import CLIENT_PREFIX, OPERATOR, SERVICE_GRANTS, SOURCE_PREFIX
from services.stack import local_secrets


def provision_local(state_dir: Path, bootstrap: str) -> dict[str, int]:
    """Identity → ACLs created now (0 everywhere on a second run)."""
    admin = local_secrets.admin_credentials(state_dir)
    client = kafka_provision.admin_client(bootstrap, admin)
    created: dict[str, int] = {}
    for name in (*SERVICE_GRANTS, OPERATOR):
        password = local_secrets.ensure_password(state_dir, name)
        created[name] = kafka_provision.provision(client, name, password)
    # Sources and clients approved earlier: their password files are the local record of the
    # approval (revoking deletes the file), so their users and grants are restored from them.
    # Users that exist on the broker without a local file are only brought up to date.
    approved = {path.stem for path in kafka_auth.secrets_dir(state_dir).glob("*.password")
                if path.stem.startswith((SOURCE_PREFIX, CLIENT_PREFIX))}
    for name in sorted(approved):
        created[name] = kafka_provision.provision(
            client, name, local_secrets.ensure_password(state_dir, name))
    for name in kafka_provision.list_users(client):
        if name.startswith((SOURCE_PREFIX, CLIENT_PREFIX)) and name not in approved:
            created[name] = kafka_provision.apply_grants(client, name)
    kafka_provision.wait_until_accepted(
        bootstrap, local_secrets.credentials_of(state_dir, OPERATOR))
    return created


def service_env(state_dir: Path, identity: str) -> dict[str, str]:
    """What a worker process needs to prove it is ``identity``: a name and a file path."""
    return {"CUSTOMLLM_KAFKA_USERNAME": identity,
            "CUSTOMLLM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CUSTOMLLM_KAFKA_PASSWORD_FILE": str(local_secrets.password_path(state_dir, identity))}


def admin_env() -> dict[str, str]:
    """The environment of a process that acts as the local stack's admin (tests, benchmarks)."""
    return {"CUSTOMLLM_KAFKA_USERNAME": local_secrets.ADMIN,
            "CUSTOMLLM_KAFKA_SASL_MECHANISM": local_secrets.ADMIN_MECHANISM}


HANDOFF_SIGNERS = ("guardrails", "rag")
LOCAL_KEYS = {
    # name → principal of the API keys the local stack issues to its own tools.
    "operator": Principal(id="operator", groups=["employees"], clearance="internal"),
    # The promotion gate: may be answered by candidate adapter versions (rag/adapter_policy).
    "finetune": Principal(id="finetune-gate", groups=["employees", "adapter-evaluators"],
                          clearance="internal"),
}


def provision_handoff_keys(state_dir: Path) -> list[str]:
    """One Ed25519 key per signing stage; the trust file lists their public keys (and keeps
    any other key already listed, e.g. the previous key during a rotation)."""
    folder = handoff.keys_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = []
    for signer in HANDOFF_SIGNERS:
        path = folder / f"{signer}.key"
        if not path.exists():
            local_secrets.write_private(path, handoff.private_pem(handoff.new_key(signer)))
            created.append(signer)
    trust_file = folder / "trusted.json"
    entries = json.loads(trust_file.read_text())["keys"] if trust_file.exists() else []
    listed = {entry["kid"] for entry in entries}
    for signer in HANDOFF_SIGNERS:
        entry = handoff.public_entry(handoff.load_signing_key(folder / f"{signer}.key"))
        if entry["kid"] not in listed:
            entries.append(entry)
    local_secrets.write_private(trust_file, json.dumps({"keys": entries}, indent=2))
    return created


def provision_api_keys(settings: Settings) -> list[str]:
    """The local tools' own API keys (hash in the key file, plaintext 0600 beside it)."""
    keys_file = identity.key_file_path(settings)
    known = {entry.id for entry in identity.read_key_file(keys_file).keys}
    created = []
    for name, principal in LOCAL_KEYS.items():
        own = identity.own_key_path(settings.state_path, name)
        if name in known and own.exists():
            continue
        key = identity.add_key(keys_file, name, principal)
        local_secrets.write_private(own, key)
        created.append(name)
    return created


def provision_all(settings: Settings) -> None:
    """Everything ``customllm up`` sets up before the workers start."""
    provision_local(settings.state_path, settings.kafka_bootstrap)
    provision_handoff_keys(settings.state_path)
    provision_api_keys(settings)
