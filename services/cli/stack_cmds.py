"""`customllm up|down|status|migrate|topics`: the local stack's lifecycle."""

from __future__ import annotations

import typer
from rich.table import Table

from services.cli.console import console
from services.common import kafka_admin, migrate
from services.common.config import Settings, get_settings
from services.common.kafka_auth import KafkaCredentials
from services.model_server.config import model_server_settings
from services.stack import kafka, local_secrets, postgres, security, supervisor
from services.stack import services as workers
from services.stack.exceptions import StackError


def up(
    services: bool = typer.Option(True, help="Also start the workers and the gateway."),
    observe: bool = typer.Option(False, help="Start the local trace viewer and export every "
                                 "service's traces to it (OTLP on the configured endpoint)."),
    model_server: bool = typer.Option(False, help="Also serve the local model over TGI's API on "
                                      "the internal port (API key required)."),
    web_console: bool = typer.Option(False, "--console", help="Also serve the web console "
                                     "(docs/console.md; log in with an API key)."),
) -> None:
    """Start Kafka and Postgres, run migrations, create topics, start the workers."""
    settings = get_settings()
    state = settings.state_path
    state.mkdir(parents=True, exist_ok=True)
    try:
        with console.status("Starting Kafka (KRaft, single node)..."):
            kafka.start(state, settings.kafka_port, settings.kafka_controller_port,
                        settings.kafka_heap)
        console.print(f"[green]kafka[/] on {settings.kafka_bootstrap} (SASL/SCRAM, ACLs)")
        with console.status("Creating the platform's Kafka identities and ACLs..."):
            security.provision_all(settings)
        with console.status("Starting Postgres + pgvector..."):
            postgres.start(state, settings.postgres_port)
        console.print(f"[green]postgres[/] on 127.0.0.1:{settings.postgres_port}")
        migrate_cmd()
        topics_cmd()
        env: dict[str, str] = {}
        supervised: list[str] = [supervisor.KAFKA, supervisor.POSTGRES]
        if observe:
            pid = workers.start(state, workers.OBSERVER)
            supervised.append(workers.OBSERVER)
            viewer = settings.otel_endpoint.removesuffix("/v1/traces")
            env = {"CUSTOMLLM_OTEL_EXPORTER": "otlp"}
            console.print(f"[green]trace viewer[/] pid {pid} on {viewer}/")
        if services:
            for name in workers.WORKERS:
                pid = workers.start(state, name, env=env)
                supervised.append(name)
                console.print(f"[green]{name}[/] worker pid {pid}, log "
                              f"{workers.log_path(state, name)}")
        if model_server:
            pid = workers.start(state, workers.MODEL_SERVER, env=env)
            supervised.append(workers.MODEL_SERVER)
            server = model_server_settings()
            console.print(f"[green]model server[/] pid {pid} on http://"
                          f"{server.model_server_host}:{server.model_server_port} (TGI API, "
                          "API key required)")
        if web_console:
            from services.console.config import ConsoleSettings

            pid = workers.start(state, workers.CONSOLE, env=env)
            supervised.append(workers.CONSOLE)
            where = ConsoleSettings()
            console.print(f"[green]web console[/] pid {pid} on http://{where.host}:{where.port}/")
        pid = supervisor.start(state, supervisor.Plan(tuple(supervised), env))
        console.print(f"[green]supervisor[/] pid {pid}: restarts whatever of these exits (log "
                      f"{workers.log_path(state, supervisor.NAME)})")
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc


def down() -> None:
    """Stop the workers, Kafka and Postgres (data stays in the state directory)."""
    state = get_settings().state_path
    if supervisor.stop(state):  # first, or it would start again what is stopped next
        console.print(f"stopped {supervisor.NAME}")
    for name in reversed(list(workers.running(state))):
        workers.stop(state, name)
        console.print(f"stopped {name}")
    if kafka.stop(state):
        console.print("stopped kafka")
    if postgres.stop(state):
        console.print("stopped postgres")


def status() -> None:
    """What runs, where, and whether the database and topics are ready."""
    settings = get_settings()
    state = settings.state_path
    table = Table("component", "state", "where")
    restarts = supervisor.read_restarts(state)

    def restarted(name: str) -> str:
        count = restarts.get(name, {}).get("restarts")
        return f", restarted {count}x" if count else ""

    kafka_pid = kafka.pid(state)
    table.add_row("kafka", _state(kafka_pid) + restarted("kafka"), settings.kafka_bootstrap)
    pg_pid = postgres.pid(state)
    table.add_row("postgres", _state(pg_pid) + restarted("postgres"),
                  f"127.0.0.1:{settings.postgres_port}")
    running = workers.running(state)
    for name in workers.WORKERS:
        replicas = {k: v for k, v in running.items() if k.split("-")[0] == name}
        table.add_row(name, _state(next(iter(replicas.values()), None))
                      + (f" x{len(replicas)}" if len(replicas) > 1 else "") + restarted(name),
                      str(workers.log_path(state, name)))
    table.add_row(supervisor.NAME, _state(supervisor.pid(state)),
                  str(workers.log_path(state, supervisor.NAME)))
    console.print(table)
    if pg_pid is not None:
        revision = migrate.current_revision(settings.sqlalchemy_url)
        head = migrate.head_revision(settings.sqlalchemy_url)
        console.print(f"schema revision {revision} (head {head})")
    if kafka_pid is not None:
        topics = kafka_admin.describe_topics(settings.kafka_bootstrap)
        console.print("topics: " + ", ".join(f"{k}({v})" for k, v in sorted(topics.items())))
    console.print(f"state directory: {state}")


def _admin_creds(settings: Settings) -> KafkaCredentials | None:
    """Topic creation is an admin act: the local stack's admin, or whoever the environment
    names (production runs `customllm topics` with its own admin credentials)."""
    if settings.kafka_username is not None:
        return None
    return local_secrets.admin_credentials(settings.state_path)


def _state(pid: int | None) -> str:
    return f"[green]running[/] (pid {pid})" if pid else "[red]stopped[/]"


def migrate_cmd() -> None:
    """Apply database migrations (Alembic) up to head."""
    settings = get_settings()
    migrate.upgrade(settings.sqlalchemy_url, embedding_model_id=settings.embedding_model_id)
    console.print(f"database at revision {migrate.current_revision(settings.sqlalchemy_url)}")


def topics_cmd() -> None:
    """Create every platform topic that does not exist yet (idempotent)."""
    settings = get_settings()
    created = kafka_admin.ensure_topics(settings.kafka_bootstrap, settings.topic_partitions,
                                        settings.topic_replication,
                                        creds=_admin_creds(settings))
    console.print(f"topics ready ({len(created)} created)")
