"""`customllm sources|clients|keys`: who may publish, who may ask over Kafka, who may ask at
all. The data steward approves document sources; an operator registers request/reply clients
and issues API keys. Each command changes the broker's users and ACLs (or the hashed key file)
at once; nothing needs a restart.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from services.cli.console import console
from services.common import identity, kafka_acl, kafka_auth, kafka_provision
from services.common.config import Settings, get_settings
from services.common.events import Principal
from services.common.exceptions import CustomLLMError
from services.common.kafka_acl import SERVICE_GRANTS
from services.stack import local_secrets, security

sources_app = typer.Typer(no_args_is_help=True, help="Approved document sources: the only "
                          "Kafka identities that may write docs.changes.")
clients_app = typer.Typer(no_args_is_help=True, help="Kafka request/reply clients: each "
                          "writes rag.requests and reads only its own rag.replies.<client>*.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys (stored hashed) → principals.")


def _admin(settings: Settings) -> kafka_provision.AdminClient:
    """The local stack's admin, or whoever the environment names (production runs these
    commands with its own admin credentials)."""
    creds = kafka_auth.credentials(settings) if settings.kafka_username \
        else local_secrets.admin_credentials(settings.state_path)
    return kafka_provision.admin_client(settings.kafka_bootstrap, creds)


def _valid(name: str) -> str:
    if not kafka_acl.valid_name(name):
        raise typer.BadParameter(f"{name!r}: use letters, digits, '-', '_' or '.'")
    return name


def _create_identity(identity_name: str, what: str) -> None:
    settings = get_settings()
    client = _admin(settings)
    password = local_secrets.ensure_password(settings.state_path, identity_name)
    created = kafka_provision.provision(client, identity_name, password)
    path = local_secrets.password_path(settings.state_path, identity_name)
    console.print(f"[green]{what}[/] Kafka user {identity_name} ({created} ACL(s) added); "
                  f"password in {path} (0600): hand it over as CUSTOMLLM_KAFKA_USERNAME="
                  f"{identity_name} and CUSTOMLLM_KAFKA_PASSWORD_FILE")


def _remove_identity(identity_name: str) -> None:
    settings = get_settings()
    client = _admin(settings)
    removed = kafka_provision.revoke_all(client, identity_name)
    kafka_provision.delete_user(client, identity_name)
    local_secrets.remove(settings.state_path, identity_name)
    console.print(f"revoked {identity_name}: {removed} ACL(s) removed, user deleted")


def _list_identities(prefix: str) -> None:
    client = _admin(get_settings())
    table = Table("identity", "ACLs", "missing ACLs")
    for name in kafka_provision.list_users(client):
        if name.startswith(prefix):
            have = len(kafka_provision.current_bindings(client, name))
            table.add_row(name, str(have), str(len(kafka_provision.missing_grants(client, name))))
    console.print(table)


@sources_app.command("approve")
def approve_source(name: str = typer.Argument(..., callback=_valid)) -> None:
    """Approve a document source: creates Kafka user source-NAME allowed to write
    docs.changes (`customllm publish --source NAME` then publishes as it)."""
    _create_identity(kafka_acl.source_identity(name), "approved source")


@sources_app.command("revoke")
def revoke_source(name: str = typer.Argument(..., callback=_valid)) -> None:
    """Withdraw a source: its user and ACLs are removed; already indexed documents stay."""
    _remove_identity(kafka_acl.source_identity(name))


@sources_app.command("list")
def list_sources() -> None:
    _list_identities(kafka_acl.SOURCE_PREFIX)


@clients_app.command("create")
def create_client(name: str = typer.Argument(..., callback=_valid)) -> None:
    """Register a request/reply client (Kafka user client-NAME, private reply topics)."""
    _create_identity(kafka_acl.client_identity(name), "registered client")


@clients_app.command("revoke")
def revoke_client(name: str = typer.Argument(..., callback=_valid)) -> None:
    _remove_identity(kafka_acl.client_identity(name))


@clients_app.command("list")
def list_clients() -> None:
    _list_identities(kafka_acl.CLIENT_PREFIX)


@keys_app.command("create")
def create_key(
    key_id: str = typer.Argument(..., callback=_valid, help="A name for the key."),
    principal: str = typer.Option(..., help="Principal id the key proves."),
    group: list[str] = typer.Option([], "--group", help="Principal's groups (repeatable)."),
    clearance: str = typer.Option("public", help="public|internal|confidential|restricted"),
    domain: list[str] = typer.Option([], "--domain", help="Policy domains the key may use "
                                     "(repeatable; none: any)."),
    key_file: Path | None = typer.Option(None, "--key-file", help="Write the key to this file "
                                         "(0600) instead of printing it."),
) -> None:
    """Issue an API key; it is shown once (or written to --key-file) and only its SHA-256 is
    stored."""
    try:
        who = Principal(id=principal, groups=list(group),
                        clearance=identity.clearance_of(clearance))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    path = identity.key_file_path(get_settings())
    key = identity.add_key(path, key_id, who, domain or None)
    if key_file is not None:
        local_secrets.write_private(key_file, key)
        console.print(f"API key {key_id} for {principal} ({clearance}) written to {key_file}")
        return
    console.print(f"API key {key_id} for {principal} ({clearance}) — shown once:")
    console.print(key, markup=False, highlight=False)


@keys_app.command("revoke")
def revoke_key(key_id: str = typer.Argument(...)) -> None:
    """Revoke a key: refused by the gateway and the input guardrail from their next request."""
    if not identity.revoke_key(identity.key_file_path(get_settings()), key_id):
        console.print(f"[red]error:[/] no active key {key_id!r}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@keys_app.command("list")
def list_keys() -> None:
    try:
        data = identity.read_key_file(identity.key_file_path(get_settings()))
    except CustomLLMError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    table = Table("key id", "principal", "groups", "clearance", "domains", "state")
    for entry in data.keys:
        table.add_row(entry.id, entry.principal.id, ", ".join(entry.principal.groups),
                      entry.principal.clearance, ", ".join(entry.domains or ["any"]),
                      "[red]revoked[/]" if entry.revoked else "active")
    console.print(table)


security_app = typer.Typer(no_args_is_help=True, help="The platform's own credentials: "
                           "generate them for a deployment, apply users and ACLs to a broker.")


@security_app.command("init")
def init_secrets(root: Path = typer.Argument(..., help="Folder to write secrets/ into "
                                             "(mount its files as Compose/Kubernetes "
                                             "secrets).")) -> None:
    """Generate every credential a deployment needs, once (existing files are kept): Kafka
    passwords per identity (admin, controller, each service, operator), the hand-off signing
    keys and their trust file, and API keys for the operator and the promotion gate."""
    root.mkdir(parents=True, exist_ok=True)
    for name in (local_secrets.ADMIN, local_secrets.CONTROLLER, *SERVICE_GRANTS,
                 kafka_acl.OPERATOR):
        local_secrets.ensure_password(root, name)
    security.provision_handoff_keys(root)
    created = security.provision_api_keys(Settings(state_dir=root))
    console.print(f"secrets in {root / 'secrets'} (0600); API keys issued: "
                  f"{', '.join(created) or 'none (already there)'}")


@security_app.command("apply")
def apply_acls(root: Path = typer.Option(..., "--secrets-root", help="Folder holding "
                                         "secrets/kafka/<identity>.password (from `init`).")
               ) -> None:
    """Create the platform's Kafka users from their password files and apply every ACL, as
    the admin (idempotent; run by `customllm up`, the Compose setup job, the Kubernetes Job)."""
    settings = get_settings()
    created = security.provision_local(root, settings.kafka_bootstrap)
    console.print(f"Kafka identities ready; ACLs added: {sum(created.values())}")
