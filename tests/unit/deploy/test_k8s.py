"""deploy/k8s/, checked offline (no cluster, kubectl or kustomize needed).

The kustomization is built the way `kubectl apply -k` would for what it uses (resources, a
namespace, an image tag), every object is validated against the vendored Kubernetes v1.33
schemas (strict: unknown fields are errors) or, for KEDA ScaledObjects, against the
openAPIV3Schema of KEDA v2.18's CRD, and then checked against the rules the deployment relies
on: probes, resources, non-root, pinned images, secrets by reference, autoscaling bounded by the
topics' partitions, and consistency with the code (consumer groups, topics, settings, CLI).
The optional model server (deploy/k8s/model-server/) is built and checked the same way.

The trust boundary of docs/security.md is checked too: every Kafka client runs as its own
identity with its own password file, each pod mounts only its own secrets, only the signing
stages hold hand-off keys, the Kafka setup Job applies users and ACLs (as the admin) before the
topics, KEDA reads lag with the service's own credentials, no development key exists, and the
model server is internal (ClusterIP, no Ingress). With `kubectl` installed, the test's build of
each kustomization is compared with `kubectl kustomize` (offline, no cluster).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "deploy" / "k8s" / "base"
MODEL_SERVER_DIR = ROOT / "deploy" / "k8s" / "model-server"
KUSTOMIZATIONS = (BASE, MODEL_SERVER_DIR)
SCHEMAS = ROOT / "deploy" / "schemas" / "k8s"
K8S_SCHEMA = SCHEMAS / "kubernetes-v1.33.0-strict.json"
KEDA_CRD = SCHEMAS / "keda.sh_scaledobjects.yaml"
KEDA_AUTH_CRD = SCHEMAS / "keda.sh_triggerauthentications.yaml"
SCHEMA_README = SCHEMAS / "README.md"
COMPOSE_FILE = ROOT / "docker-compose.yml"
CLI_MAIN = ROOT / "services" / "cli" / "main.py"

IMAGE = "ghcr.io/customllm/customllm"
TAG = "0.1.0"
NAMESPACE = "customllm"
SECRET = "customllm-secrets"
SERVICES = ("ingest", "embedder", "guardrails", "rag", "gateway", "finetune", "audit")
STREAM_PROCESSORS = ("ingest", "embedder", "guardrails", "rag")
# Jobs wait in Postgres, not in a topic backlog: scaled by replicas, not by consumer lag.
QUEUE_WORKERS = ("finetune",)
UID = 10001  # the image's user (deploy/docker/Dockerfile, APP_UID)
STATE_DIR = "/var/lib/customllm"
MODEL_SERVER = "customllm-model-server"
CONSOLE = "customllm-console"  # HTTP, no Kafka identity (docs/console.md)
CREDENTIALS = "/etc/customllm"  # where each pod's projected credentials volume is mounted
HANDOFF_SIGNERS = ("guardrails", "rag")
API_KEY_VERIFIERS = ("customllm-gateway", "customllm-guardrails", MODEL_SERVER,
                     "customllm-audit", CONSOLE)
# Pod → the secrets it may mount (besides `customllm-secrets`, referenced by single keys).
POD_SECRETS = {
    "customllm-ingest": {"customllm-kafka-ingest"},
    "customllm-embedder": {"customllm-kafka-embedder"},
    "customllm-guardrails": {"customllm-kafka-guardrails", "customllm-handoff-guardrails",
                             "customllm-handoff-trust", "customllm-api-keys"},
    "customllm-rag": {"customllm-kafka-rag", "customllm-handoff-rag", "customllm-handoff-trust"},
    "customllm-gateway": {"customllm-kafka-gateway", "customllm-api-keys"},
    "customllm-finetune": {"customllm-kafka-finetune", "customllm-api-key-finetune"},
    "customllm-audit": {"customllm-kafka-audit", "customllm-api-keys"},
    CONSOLE: {"customllm-api-keys", "customllm-console-session"},
    MODEL_SERVER: {"customllm-api-keys"},
    "customllm-migrate": set(),
    "customllm-kafka-setup": {f"customllm-kafka-{name}" for name in (
        "admin", "operator", *SERVICES)},
}

# apiVersion/kind → definition in the vendored schema.
DEFINITIONS = {
    ("v1", "Namespace"): "io.k8s.api.core.v1.Namespace",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("v1", "Service"): "io.k8s.api.core.v1.Service",
    ("v1", "ServiceAccount"): "io.k8s.api.core.v1.ServiceAccount",
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("batch/v1", "Job"): "io.k8s.api.batch.v1.Job",
    ("autoscaling/v2", "HorizontalPodAutoscaler"):
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
}
# KEDA custom resources → their vendored CRD.
CRDS = {"ScaledObject": KEDA_CRD, "TriggerAuthentication": KEDA_AUTH_CRD}
# Every trigger metadata key KEDA v2.18's kafka scaler reads (pkg/scalers/kafka_scaler.go).
KAFKA_SCALER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "partitionLimitation", "offsetResetPolicy", "lagThreshold",
    "activationLagThreshold", "allowIdleConsumers", "excludePersistentLag",
    "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
    "version", "sasl", "saslTokenProvider", "tls", "unsafeSsl", "awsRegion",
}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|DATABASE_URL|CREDENTIAL)", re.I)


def _secretish(key: str) -> bool:
    """A variable holding a secret value (one naming a file or folder holds a path)."""
    return bool(SECRET_NAME.search(key)) and not key.endswith(("_FILE", "_PATH", "_DIR"))


# --------------------------------------------------------------------------------------------
# Building the kustomization (the subset of kustomize the base uses)
# --------------------------------------------------------------------------------------------


def _kustomization(folder: Path = BASE) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def build(folder: Path = BASE) -> list[dict[str, Any]]:
    kustomization = _kustomization(folder)
    unsupported = set(kustomization) - {"apiVersion", "kind", "namespace", "resources", "images"}
    assert not unsupported, f"extend the test's build() for {sorted(unsupported)}"
    images = {image["name"]: image for image in kustomization.get("images", [])}
    objects = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((folder / resource).read_text()):
            if doc is None:
                continue
            doc = copy.deepcopy(doc)
            if doc["kind"] != "Namespace" and "namespace" in kustomization:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            for container in _all_containers(doc):
                name, _, tag = container["image"].rpartition(":")
                if name in images and "newTag" in images[name]:
                    container["image"] = f"{name}:{images[name]['newTag']}"
            objects.append(doc)
    return objects


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def _all_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    """The base and the optional model server, as `kubectl apply -k` would create them."""
    return [obj for folder in KUSTOMIZATIONS for obj in build(folder)]


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


@pytest.fixture(scope="module")
def deployments(objects) -> dict[str, dict[str, Any]]:
    return _of_kind(objects, "Deployment")


@pytest.fixture(scope="module")
def scaled_objects(objects) -> dict[str, dict[str, Any]]:
    return _of_kind(objects, "ScaledObject")


@pytest.fixture(scope="module")
def config(objects) -> dict[str, str]:
    return _of_kind(objects, "ConfigMap")["customllm-config"]["data"]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _errors(validator: Any, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))]


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s_schema() -> dict[str, Any]:
    return json.loads(K8S_SCHEMA.read_text())


def _k8s_validator(k8s_schema: dict[str, Any], definition: str) -> Draft202012Validator:
    return Draft202012Validator({**k8s_schema, "$ref": f"#/$defs/{definition}"})


def _strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it with strict field validation (kubectl's
    default): an unknown field is an error, not silently pruned."""
    if isinstance(schema, dict):
        result = {key: _strict(value) for key, value in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            result["additionalProperties"] = False
        return result
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _crd_validator(path: Path, kind: str) -> Any:
    crd = yaml.safe_load(path.read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "keda.sh" and crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    assert version["served"] and version["storage"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return validator_for({})(schema)


@pytest.fixture(scope="module")
def scaled_object_validator() -> Any:
    return _crd_validator(KEDA_CRD, "ScaledObject")


@pytest.fixture(scope="module")
def crd_validators(scaled_object_validator) -> dict[str, Any]:
    return {"ScaledObject": scaled_object_validator,
            "TriggerAuthentication": _crd_validator(KEDA_AUTH_CRD, "TriggerAuthentication")}


def test_vendored_schemas_are_the_recorded_files(k8s_schema):
    readme = SCHEMA_README.read_text()
    for path in (K8S_SCHEMA, KEDA_CRD, KEDA_AUTH_CRD):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest in readme, f"{path.name}: sha256 {digest} is not recorded in README.md"
    assert "Apache License 2.0" in readme
    Draft202012Validator.check_schema(k8s_schema)
    for definition in DEFINITIONS.values():
        assert definition in k8s_schema["$defs"]
    refs = set(re.findall(r'"\$ref": "#/\$defs/([^"]+)"', K8S_SCHEMA.read_text()))
    assert refs <= set(k8s_schema["$defs"]), "the subset must be closed under $ref"


def test_every_object_validates_against_its_schema(objects, k8s_schema, crd_validators):
    meta = _k8s_validator(k8s_schema, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CRDS:
            assert obj["apiVersion"] == "keda.sh/v1alpha1"
            errors = _errors(crd_validators[obj["kind"]], obj) + _errors(meta, obj["metadata"])
        else:
            definition = DEFINITIONS.get((obj["apiVersion"], obj["kind"]))
            assert definition, f"{where}: no vendored schema for {obj['apiVersion']}"
            errors = _errors(_k8s_validator(k8s_schema, definition), obj)
        assert not errors, f"{where}:\n" + "\n".join(errors)


def test_the_validation_is_strict(objects, k8s_schema, scaled_object_validator, crd_validators):
    """A misspelt field must fail, or the test above proves little."""
    deployment = copy.deepcopy(_of_kind(objects, "Deployment")["customllm-ingest"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert _errors(_k8s_validator(k8s_schema, DEFINITIONS[("apps/v1", "Deployment")]),
                   deployment)
    scaled = copy.deepcopy(_of_kind(objects, "ScaledObject")["customllm-ingest"])
    scaled["spec"]["maxReplicas"] = 3
    assert _errors(scaled_object_validator, scaled)
    scaled = copy.deepcopy(_of_kind(objects, "ScaledObject")["customllm-ingest"])
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100  # must be a string
    assert _errors(scaled_object_validator, scaled)
    auth = copy.deepcopy(_of_kind(objects, "TriggerAuthentication")["customllm-ingest-kafka"])
    auth["spec"]["secretTargetRef"][0]["secret"] = "x"  # `name`, not `secret`
    assert _errors(crd_validators["TriggerAuthentication"], auth)


# --------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------


def test_expected_objects_exist(objects):
    kinds: dict[str, set[str]] = {}
    for obj in objects:
        kinds.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    assert kinds["Namespace"] == {NAMESPACE}
    deployments = {f"customllm-{name}" for name in SERVICES} | {MODEL_SERVER, CONSOLE}
    assert kinds["Deployment"] == deployments
    assert kinds["ScaledObject"] == {f"customllm-{name}" for name in STREAM_PROCESSORS}
    assert kinds["TriggerAuthentication"] == {
        f"customllm-{name}-kafka" for name in STREAM_PROCESSORS}
    assert kinds["PodDisruptionBudget"] == deployments
    assert kinds["Job"] == {"customllm-migrate", "customllm-kafka-setup"}
    assert kinds["Service"] == {"customllm-gateway", MODEL_SERVER, CONSOLE}
    assert kinds["HorizontalPodAutoscaler"] == {"customllm-gateway"}
    assert "Secret" not in kinds, "secrets are created outside these manifests"
    assert "Ingress" not in kinds
    # The model server is optional: not part of the base.
    assert not any(obj["metadata"]["name"] == MODEL_SERVER for obj in build(BASE))
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names))
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_each_service_runs_its_module_from_the_one_image(deployments):
    for name in SERVICES:
        (container,) = deployments[f"customllm-{name}"]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert (ROOT / "services" / name / "__main__.py").is_file()
        assert container["image"] == f"{IMAGE}:{TAG}"


def test_jobs_run_the_cli_setup_commands(objects):
    from typer.testing import CliRunner

    from services.cli.main import app

    jobs = _of_kind(objects, "Job")
    commands = {name: [c["command"] for c in _all_containers(job)] for name, job in jobs.items()}
    # Users and ACLs first (an init container), then the topics, both as the admin.
    assert commands == {
        "customllm-migrate": [["customllm", "migrate"]],
        "customllm-kafka-setup": [
            ["customllm", "security", "apply", "--secrets-root", CREDENTIALS],
            ["customllm", "topics"]]}
    for command in (c for cs in commands.values() for c in cs):
        words = [word for word in command[1:] if not word.startswith("-")][:2]
        result = CliRunner().invoke(app, [*words, "--help"])
        assert result.exit_code == 0, f"`customllm {' '.join(words)}`: {result.output}"
        assert all(option in result.output for option in command if option.startswith("--"))
    for job in jobs.values():
        spec = job["spec"]
        assert spec["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
        assert spec["backoffLimit"] >= 1 and spec.get("ttlSecondsAfterFinished")


def test_images_are_pinned_and_never_latest(objects):
    for folder in KUSTOMIZATIONS:
        assert _kustomization(folder)["images"] == [{"name": IMAGE, "newTag": TAG}], folder
    for obj in objects:
        for container in _all_containers(obj):
            image = container["image"]
            last = image.rsplit("/", 1)[-1]
            assert ":" in last or "@" in image, f"{image}: no tag"
            assert not image.endswith(":latest"), image
            assert image == f"{IMAGE}:{TAG}"
    assert ":latest" not in _raw_manifests()


def test_selectors_match_their_pods(objects, deployments):
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
    pod_labels = {name: d["spec"]["template"]["metadata"]["labels"]
                  for name, d in deployments.items()}
    for kind in ("PodDisruptionBudget", "Service"):
        for name, obj in _of_kind(objects, kind).items():
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matched = [d for d, labels in pod_labels.items() if selector.items() <= labels.items()]
            assert matched == [name], f"{kind}/{name} selects {matched}"


# --------------------------------------------------------------------------------------------
# Pod rules
# --------------------------------------------------------------------------------------------


def test_every_deployment_has_probes_and_resources(deployments):
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container.get("readinessProbe"), f"{name}: no readiness probe"
            assert container.get("livenessProbe"), f"{name}: no liveness probe"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), name
            assert _bytes(resources["requests"]["memory"]) <= _bytes(
                resources["limits"]["memory"]), name


def test_jobs_have_resources(objects):
    for name, job in _of_kind(objects, "Job").items():
        for container in _all_containers(job):
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
    assert match, quantity
    return float(match[1]) * units.get(match[2] or "", 1)


def _compose_worker_check() -> list[str]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    test = compose["x-worker-healthcheck"]["test"]
    assert test[0] == "CMD"
    return test[1:]


def test_worker_probes_follow_the_compose_healthcheck(deployments):
    compose_check = _compose_worker_check()
    for name in STREAM_PROCESSORS:
        (container,) = deployments[f"customllm-{name}"]["spec"]["template"]["spec"]["containers"]
        readiness = container["readinessProbe"]["exec"]["command"]
        liveness = container["livenessProbe"]["exec"]["command"]
        if "CUSTOMLLM_DATABASE_URL" in _env(container):
            assert readiness == compose_check, f"{name}: not the compose healthcheck"
        else:
            assert readiness[:2] == ["python", "-c"]
            assert "CUSTOMLLM_KAFKA_BOOTSTRAP" in readiness[2]
            assert "CUSTOMLLM_DATABASE_URL" not in readiness[2]
        # Liveness is only about the process itself (PID 1 state), never the dependencies.
        assert liveness[:2] == ["python", "-c"] and "/proc/1/stat" in liveness[2]
        assert "socket" not in liveness[2]
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert probe["timeoutSeconds"] < probe["periodSeconds"]


def test_probe_scripts_are_valid_python(deployments):
    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                command = container.get(kind, {}).get("exec", {}).get("command")
                if command:
                    compile(command[2], f"{deployment['metadata']['name']}:{kind}", "exec")


def test_gateway_is_probed_over_http_and_listens_on_all_interfaces(deployments):
    (container,) = deployments["customllm-gateway"]["spec"]["template"]["spec"]["containers"]
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[kind]["httpGet"] == {"path": "/healthz", "port": "http"}
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    env = _env(container)
    assert env["CUSTOMLLM_GATEWAY_HOST"]["value"] == "0.0.0.0"
    assert int(env["CUSTOMLLM_GATEWAY_PORT"]["value"]) == port
    source = (ROOT / "services" / "gateway" / "app.py").read_text()
    assert '"/healthz"' in source


def test_pods_run_as_non_root_with_a_read_only_root_filesystem(objects):
    for obj in objects:
        spec = _pod_spec(obj)
        if spec is None:
            continue
        name = obj["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == UID, name
        assert pod["runAsUser"] != 0 and pod["runAsGroup"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for container in _all_containers(obj):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security.get("runAsUser", UID) != 0, name
            assert not security.get("privileged"), name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert STATE_DIR in mounts and "/tmp" in mounts, f"{name}: writable dirs"
            volumes = {v["name"]: v for v in spec["volumes"]}
            for path in (STATE_DIR, "/tmp"):
                assert "emptyDir" in volumes[mounts[path]], f"{name}: {path} is no emptyDir"


def test_state_dir_setting_matches_the_mounted_emptydir(config):
    assert config["CUSTOMLLM_STATE_DIR"] == STATE_DIR


# --------------------------------------------------------------------------------------------
# Configuration and secrets
# --------------------------------------------------------------------------------------------


def test_configmap_holds_real_settings_and_no_secret(config, monkeypatch):
    from services.common.config import Settings
    from services.stack.settings_catalog import known_variables

    fields = known_variables()
    unknown = {key for key in config if key.startswith("CUSTOMLLM_")} - fields
    assert not unknown, f"not settings (a typo is silently ignored): {sorted(unknown)}"
    secretish = {key for key in config if _secretish(key)}
    assert not secretish, f"secret values do not belong in a ConfigMap: {sorted(secretish)}"
    for key, value in config.items():
        assert isinstance(value, str), f"{key}: ConfigMap values must be strings"
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.topic_partitions == int(config["CUSTOMLLM_TOPIC_PARTITIONS"])
    assert settings.database_url is None


def test_secrets_are_only_referenced(objects):
    for obj in objects:
        for container in _all_containers(obj):
            name = f"{obj['metadata']['name']}/{container['name']}"
            for key, item in _env(container).items():
                if _secretish(key):
                    assert "value" not in item, f"{name}: {key} has a literal value"
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == SECRET and ref["key"] == key, name
            for source in container.get("envFrom", []):
                assert "configMapRef" in source or "secretRef" in source, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] == SECRET, name
            for key, item in _env(container).items():
                value = str(item.get("value", ""))
                assert "password=" not in value.lower(), f"{name}: {key}"
                if key.endswith("_FILE"):
                    assert value.startswith(CREDENTIALS + "/"), f"{name}: {key} not mounted"
        spec = _pod_spec(obj) or {}
        for volume in spec.get("volumes", []):
            assert "secret" not in volume, "secrets are projected into `credentials` only"
    raw = _raw_manifests()
    assert not re.search(r"postgres(?:ql)?(?:\+\w+)?://[^\s/]*:[^\s/]*@", raw), (
        "a database URL with a password appears in the manifests")
    assert "kind: Secret" not in raw and "stringData" not in raw
    assert not re.search(r"dev(elopment)?[ _-]?key", raw, re.I), "no development key exists"


def _raw_manifests() -> str:
    return "\n".join(path.read_text() for folder in KUSTOMIZATIONS
                     for path in sorted(folder.glob("*.yaml")))


def test_database_workers_and_migrations_get_the_database_url(objects, deployments):
    needs_db = {"customllm-ingest", "customllm-embedder", "customllm-guardrails", "customllm-rag",
                "customllm-finetune", "customllm-audit", CONSOLE, "customllm-migrate"}
    for obj in objects:
        for container in _all_containers(obj):
            has = "CUSTOMLLM_DATABASE_URL" in _env(container)
            assert has == (obj["metadata"]["name"] in needs_db), obj["metadata"]["name"]
            refs = [s for s in container.get("envFrom", []) if "configMapRef" in s]
            assert refs == [{"configMapRef": {"name": "customllm-config"}}]


# --------------------------------------------------------------------------------------------
# Trust boundary (docs/security.md): identities, own secrets only, signed hand-offs, keys
# --------------------------------------------------------------------------------------------


def _credentials(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Path under CREDENTIALS → (secret, key) of the pod's projected credentials volume, after
    checking that every container mounts it read-only at CREDENTIALS."""
    spec = _pod_spec(obj)
    volumes = [v for v in spec["volumes"] if v["name"] == "credentials"]
    if not volumes:
        for container in _all_containers(obj):
            assert all(m["mountPath"] != CREDENTIALS for m in container.get("volumeMounts", []))
        return {}
    (volume,) = volumes
    for container in _all_containers(obj):
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "credentials"]
        assert mount == {"name": "credentials", "mountPath": CREDENTIALS, "readOnly": True}
    projected = volume["projected"]
    # Readable by the pod's group (fsGroup), nobody else; never writable.
    assert projected["defaultMode"] == 0o440
    files = {}
    for source in projected["sources"]:
        assert set(source) == {"secret"}, "only secrets are projected"
        secret = source["secret"]
        assert not secret.get("optional"), "a missing secret must stop the pod, not pass"
        for item in secret["items"]:
            assert "mode" not in item
            assert item["path"] not in files, item["path"]
            files[item["path"]] = (secret["name"], item["key"])
    return files


def _pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if _pod_spec(obj) is not None}


def test_each_pod_mounts_only_its_own_secrets(objects):
    pods = _pods(objects)
    assert set(pods) == set(POD_SECRETS)
    for name, obj in pods.items():
        secrets = {secret for secret, _ in _credentials(obj).values()}
        assert secrets == POD_SECRETS[name], name
        # Every *_FILE setting names a file that the projection provides.
        for container in _all_containers(obj):
            for key, item in _env(container).items():
                if key.endswith("_FILE"):
                    path = item["value"].removeprefix(CREDENTIALS + "/")
                    assert path in _credentials(obj), f"{name}: {key} → {item['value']}"


def test_every_kafka_client_is_its_own_identity_with_its_own_password_file(objects, config):
    from services.common.kafka_acl import ADMIN, SERVICE_GRANTS

    assert set(SERVICES) == set(SERVICE_GRANTS)
    assert config["CUSTOMLLM_KAFKA_SECURITY_PROTOCOL"] in ("SASL_PLAINTEXT", "SASL_SSL")
    assert config["CUSTOMLLM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    identities = {f"customllm-{name}": name for name in SERVICES}
    identities["customllm-kafka-setup"] = ADMIN
    pods = _pods(objects)
    for name, obj in pods.items():
        files = _credentials(obj)
        for container in _all_containers(obj):
            env = _env(container)
            if name not in identities:
                assert "CUSTOMLLM_KAFKA_USERNAME" not in env, f"{name} uses no Kafka"
                continue
            identity = identities[name]
            assert env["CUSTOMLLM_KAFKA_USERNAME"] == {"name": "CUSTOMLLM_KAFKA_USERNAME",
                                                       "value": identity}, name
            path = env["CUSTOMLLM_KAFKA_PASSWORD_FILE"]["value"].removeprefix(CREDENTIALS + "/")
            assert files[path] == (f"customllm-kafka-{identity}", "password"), name
            assert "CUSTOMLLM_KAFKA_PASSWORD" not in env, f"{name}: an inline password"


def test_kafka_setup_job_creates_every_identity_as_the_admin(objects):
    """`security apply --secrets-root` reads secrets/kafka/<identity>.password for every
    platform identity (services/stack/security.py), so the Job projects exactly those."""
    from services.common.kafka_acl import ADMIN, OPERATOR, SERVICE_GRANTS

    job = _of_kind(objects, "Job")["customllm-kafka-setup"]
    files = _credentials(job)
    expected = {f"secrets/kafka/{identity}.password": (f"customllm-kafka-{identity}", "password")
                for identity in (ADMIN, OPERATOR, *SERVICE_GRANTS)}
    assert files == expected
    (init,) = job["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][-2:] == ["--secrets-root", CREDENTIALS]


def test_only_the_signing_stages_hold_handoff_keys(objects):
    for name, obj in _pods(objects).items():
        files = _credentials(obj)
        handoff = {secret for secret, _ in files.values() if secret.startswith("customllm-handoff")}
        env = {key: item for c in _all_containers(obj) for key, item in _env(c).items()}
        signer = name.removeprefix("customllm-")
        if signer in HANDOFF_SIGNERS:
            assert handoff == {f"customllm-handoff-{signer}", "customllm-handoff-trust"}
            key = env["CUSTOMLLM_HANDOFF_SIGNING_KEY_FILE"]["value"].removeprefix(
                CREDENTIALS + "/")
            trust = env["CUSTOMLLM_HANDOFF_TRUST_FILE"]["value"].removeprefix(CREDENTIALS + "/")
            assert files[key][0] == f"customllm-handoff-{signer}"
            assert files[trust] == ("customllm-handoff-trust", "trusted.json")
        else:
            assert not handoff, f"{name} must not hold hand-off keys"
            assert not any(key.startswith("CUSTOMLLM_HANDOFF_") for key in env), name


def test_api_keys_are_verified_from_the_hashed_file_and_the_gate_has_its_own(objects):
    for name, obj in _pods(objects).items():
        files = _credentials(obj)
        env = {key: item for c in _all_containers(obj) for key, item in _env(c).items()}
        if name in API_KEY_VERIFIERS:
            path = env["CUSTOMLLM_API_KEYS_FILE"]["value"].removeprefix(CREDENTIALS + "/")
            assert files[path] == ("customllm-api-keys", "api-keys.yaml"), name
        else:
            assert "CUSTOMLLM_API_KEYS_FILE" not in env, name
        if name == "customllm-finetune":
            path = env["CUSTOMLLM_API_KEY_FILE"]["value"].removeprefix(CREDENTIALS + "/")
            assert files[path] == ("customllm-api-key-finetune", "api.key")
        else:
            assert "CUSTOMLLM_API_KEY_FILE" not in env, name
        assert "CUSTOMLLM_API_KEY" not in env, f"{name}: an inline API key"


def test_scalers_read_lag_as_the_services_own_identity(objects, scaled_objects, deployments,
                                                       config):
    auths = _of_kind(objects, "TriggerAuthentication")
    sasl = {"SCRAM-SHA-512": "scram_sha512"}[config["CUSTOMLLM_KAFKA_SASL_MECHANISM"]]
    tls = "enable" if config["CUSTOMLLM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" else "disable"
    for name in STREAM_PROCESSORS:
        for trigger in scaled_objects[f"customllm-{name}"]["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": f"customllm-{name}-kafka"}
            assert trigger["metadata"]["sasl"] == sasl and trigger["metadata"]["tls"] == tls
        spec = auths[f"customllm-{name}-kafka"]["spec"]
        (username,) = spec["env"]
        (container,) = deployments[f"customllm-{name}"]["spec"]["template"]["spec"]["containers"]
        assert username == {"parameter": "username", "name": "CUSTOMLLM_KAFKA_USERNAME",
                            "containerName": container["name"]}
        assert _env(container)["CUSTOMLLM_KAFKA_USERNAME"]["value"] == name
        (password,) = spec["secretTargetRef"]
        assert password == {"parameter": "password", "name": f"customllm-kafka-{name}",
                            "key": "password"}
        assert set(spec) == {"env", "secretTargetRef"}


def test_model_server_is_internal_and_requires_keys(objects, deployments):
    services = _of_kind(objects, "Service")
    service = services[MODEL_SERVER]["spec"]
    assert service["type"] == "ClusterIP"
    assert not {"externalIPs", "loadBalancerIP", "externalName"} & set(service)
    assert all("nodePort" not in port for s in services.values() for port in s["spec"]["ports"])
    (container,) = deployments[MODEL_SERVER]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "services.model_server"]
    env = _env(container)
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert env["CUSTOMLLM_MODEL_SERVER_HOST"]["value"] == "0.0.0.0"
    assert int(env["CUSTOMLLM_MODEL_SERVER_PORT"]["value"]) == port
    assert [p["targetPort"] for p in service["ports"]] == ["http"]
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[kind]["httpGet"] == {"path": "/health", "port": "http"}
    # The gateway's Service never routes to the model server's port.
    gateway = deployments["customllm-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert port not in {p["containerPort"] for p in gateway["ports"]}
    assert "CUSTOMLLM_MODEL_SERVER_PORT" not in _env(gateway)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda f: f.name)
def test_build_matches_kubectl_kustomize(folder):
    """The test's build is what `kubectl kustomize` produces (offline: no cluster needed)."""
    result = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ours = sorted(build(folder), key=lambda o: (o["kind"], o["metadata"]["name"]))
    theirs = sorted((doc for doc in yaml.safe_load_all(result.stdout) if doc),
                    key=lambda o: (o["kind"], o["metadata"]["name"]))
    assert ours == theirs


# --------------------------------------------------------------------------------------------
# Autoscaling and disruption
# --------------------------------------------------------------------------------------------


def _partitions(topic: str, config: dict[str, str]) -> int:
    from services.common.config import Settings
    from services.common.topics import TOPICS

    (spec,) = [s for s in TOPICS if s.name == topic]
    default = Settings.model_fields["topic_partitions"].default
    return spec.partitions or min(default, int(config["CUSTOMLLM_TOPIC_PARTITIONS"]))


def test_scaled_objects_follow_each_stream_processors_consumer_group(scaled_objects, config):
    from services.ops.doctor import CONSUMER_GROUPS

    app_ids = {}
    for name in STREAM_PROCESSORS:
        source = (ROOT / "services" / name / "config.py").read_text()
        app_ids[name] = re.search(r'^APP_ID = "([^"]+)"', source, re.MULTILINE)[1]
    for name in STREAM_PROCESSORS:
        scaled = scaled_objects[f"customllm-{name}"]["spec"]
        assert scaled["scaleTargetRef"]["name"] == f"customllm-{name}"
        assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        triggers = scaled["triggers"]
        assert triggers and all(t["type"] == "kafka" for t in triggers)
        topics = set()
        for trigger in triggers:
            metadata = trigger["metadata"]
            assert set(metadata) <= KAFKA_SCALER_KEYS, set(metadata) - KAFKA_SCALER_KEYS
            assert metadata["consumerGroup"] == app_ids[name]
            assert metadata["bootstrapServers"] == config["CUSTOMLLM_KAFKA_BOOTSTRAP"]
            assert int(metadata["lagThreshold"]) > 0
            # The workers start from the earliest offset (services/common/streaming.py).
            assert metadata["offsetResetPolicy"] == "earliest"
            topics.add(metadata["topic"])
        # Scaled on the topics the group consumes (rag also reads docs.status, not a load).
        assert topics <= set(CONSUMER_GROUPS[app_ids[name]])
        assert topics, name


def test_replicas_never_exceed_partitions(scaled_objects, config):
    for name, scaled in scaled_objects.items():
        spec = scaled["spec"]
        partitions = min(_partitions(t["metadata"]["topic"], config) for t in spec["triggers"])
        assert 1 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"] <= partitions, (
            f"{name}: maxReplicaCount {spec['maxReplicaCount']} > {partitions} partitions")
        assert all(t["metadata"].get("allowIdleConsumers", "false") == "false"
                   for t in spec["triggers"])


def test_gateway_scales_on_cpu(objects, deployments):
    hpa = _of_kind(objects, "HorizontalPodAutoscaler")["customllm-gateway"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "customllm-gateway"}
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    container = deployments["customllm-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"
    # No two autoscalers on one Deployment.
    scaled_targets = {s["spec"]["scaleTargetRef"]["name"]
                      for s in _of_kind(objects, "ScaledObject").values()}
    assert "customllm-gateway" not in scaled_targets


def test_every_deployment_has_a_disruption_budget_that_allows_drains(objects, deployments):
    budgets = _of_kind(objects, "PodDisruptionBudget")
    for name in deployments:
        spec = budgets[name]["spec"]
        # With a single replica, minAvailable: 1 would block every node drain.
        assert "minAvailable" not in spec and spec["maxUnavailable"] >= 1, name


def test_gateway_service_targets_the_named_port(objects, deployments):
    service = _of_kind(objects, "Service")["customllm-gateway"]["spec"]
    (port,) = service["ports"]
    container = deployments["customllm-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}


def test_manifests_are_plain_yaml_without_anchors():
    """Anchors and aliases are resolved differently by some tools (kustomize's kyaml among
    them); every manifest spells its values out."""
    for path in sorted(p for folder in KUSTOMIZATIONS for p in folder.glob("*.yaml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split(" #", 1)[0]
            if code.lstrip().startswith("#"):
                continue
            assert not re.search(r"(:|-)\s+[&*][\w-]+", code), f"{path.name}:{number}: {line}"
