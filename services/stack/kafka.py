"""A real single-node Apache Kafka (KRaft) for the local stack.

The broker jars come from Maven Central through ``deploy/local/kafka/pom.xml``: no tarball
download, no Docker. Storage is formatted once; later starts reuse it, so topics and offsets
survive restarts like on a real cluster.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from services.common import kafka_auth
from services.common.config import REPO_ROOT
from services.common.kafka_auth import KafkaCredentials
from services.stack import local_secrets, processes
from services.stack.exceptions import StackError

KAFKA_DIR = REPO_ROOT / "deploy" / "local" / "kafka"
LIB_DIR = KAFKA_DIR / "target" / "lib"
PROCESS_NAME = "kafka"


@dataclass(frozen=True)
class KafkaPaths:
    """Where one broker keeps its files under the state directory."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "kafka" / "data"

    @property
    def config(self) -> Path:
        return self.root / "kafka" / "server.properties"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"


def ensure_jars() -> Path:
    """Resolve the broker jars with Maven once; later calls find them in target/lib."""
    if LIB_DIR.exists() and any(LIB_DIR.glob("kafka_2.13-*.jar")):
        return LIB_DIR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka broker jars; install maven")
    result = subprocess.run(  # noqa: S603
        [mvn, "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:copy-dependencies"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"mvn could not resolve the Kafka jars:\n{result.stdout}{result.stderr}")
    return LIB_DIR


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("a Java 17+ runtime (java) is needed to run Kafka")
    return java


def _classpath() -> str:
    return f"{ensure_jars()}/*"


def render_config(paths: KafkaPaths, port: int, controller_port: int,
                  authenticated: bool = True) -> Path:
    """The config holds the admin and controller passwords, so it is private to its owner."""
    template = Template((KAFKA_DIR / "server.properties.template").read_text())
    text = template.substitute(
        port=port, controller_port=controller_port, data_dir=paths.data,
        admin_password=local_secrets.ensure_password(paths.root, local_secrets.ADMIN),
        controller_password=local_secrets.ensure_password(paths.root, local_secrets.CONTROLLER))
    if not authenticated:
        text = _unauthenticated(text)
    local_secrets.write_private(paths.config, text)
    return paths.config


def _unauthenticated(text: str) -> str:
    """The same broker without SASL or ACLs: only the security benchmark's baseline (what
    authentication costs) starts one, never `customllm up` or the tests."""
    dropped = ("sasl.", "listener.name.", "authorizer.", "allow.everyone", "super.users")
    lines = [line for line in text.splitlines() if not line.startswith(dropped)]
    return "\n".join(line.replace("BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                                   "BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT") for line in lines)


def format_storage(paths: KafkaPaths, authenticated: bool = True) -> None:
    """KRaft needs a formatted log directory; format only a new one so data survives restarts."""
    if (paths.data / "meta.properties").exists():
        if authenticated and not local_secrets.password_path(paths.root,
                                                             local_secrets.ADMIN).exists():
            raise StackError(
                f"{paths.data} was formatted without authentication (an older version of the "
                "local stack); stop the stack and remove that folder to start a secured one")
        return
    paths.data.mkdir(parents=True, exist_ok=True)
    cluster_id = _random_cluster_id()
    result = subprocess.run(  # noqa: S603
        [_java(), "-cp", _classpath(), "kafka.tools.StorageTool", "format",
         # "=" form: a random id may start with "-", which argparse would take for an option.
         f"--cluster-id={cluster_id}", f"--config={paths.config}", "--ignore-formatted"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise StackError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")


def _random_cluster_id() -> str:
    """KRaft cluster ids are 16 random bytes in URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start(state_dir: Path, port: int, controller_port: int, heap: str = "512m",
          timeout_s: float = 90.0, authenticated: bool = True) -> int:
    """Start the broker unless it already runs; return its pid once it accepts connections."""
    paths = KafkaPaths(state_dir)
    running = processes.read_pid(paths.run, PROCESS_NAME)
    if running is not None:
        return running
    if port_open(port):
        raise StackError(f"port {port} is taken by another process; set CUSTOMLLM_KAFKA_PORT")
    render_config(paths, port, controller_port, authenticated)
    format_storage(paths, authenticated)
    argv = [
        _java(), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={paths.logs / 'kafka'}",
        f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.yaml'}",
        "-cp", _classpath(), "kafka.Kafka", str(paths.config),
    ]
    pid = processes.spawn(PROCESS_NAME, argv, paths.run, paths.logs / "kafka" / "stdout.log")
    try:
        processes.wait_until(lambda: port_open(port), timeout_s, f"Kafka on 127.0.0.1:{port}")
        admin = local_secrets.admin_credentials(state_dir) if authenticated else None
        processes.wait_until(
            lambda: broker_answers(f"127.0.0.1:{port}", admin, authenticated), timeout_s,
            "Kafka metadata")
    except StackError:
        processes.stop(paths.run, PROCESS_NAME)
        raise
    return pid


def broker_answers(bootstrap: str, creds: KafkaCredentials | None = None,
                   authenticated: bool = True) -> bool:
    """True once the broker serves metadata, i.e. the controller has elected itself."""
    from confluent_kafka.admin import AdminClient

    try:
        config = kafka_auth.client_config(bootstrap, creds=creds) if authenticated else {
            "bootstrap.servers": bootstrap, "security.protocol": "PLAINTEXT"}
        metadata = AdminClient(config).list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    return bool(metadata.brokers)


def stop(state_dir: Path) -> bool:
    """Controlled shutdown (SIGTERM) so the log is clean and the next start is fast."""
    return processes.stop(KafkaPaths(state_dir).run, PROCESS_NAME, timeout_s=60)


def pid(state_dir: Path) -> int | None:
    return processes.read_pid(KafkaPaths(state_dir).run, PROCESS_NAME)
