"""Session fixtures: a real Kafka broker, a real Postgres and the real workers, started once.

Ports differ from the local stack's defaults so the suite can run beside `customllm up`.
The environment is set before any project module reads its settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

# Named now (settings read it at import), created only when a test needs the stack.
_STATE = Path(tempfile.gettempdir()) / f"customllm-test-{uuid.uuid4().hex[:10]}"
os.environ.update({
    "CUSTOMLLM_STATE_DIR": str(_STATE),
    "CUSTOMLLM_KAFKA_PORT": os.environ.get("CUSTOMLLM_TEST_KAFKA_PORT", "29092"),
    "CUSTOMLLM_KAFKA_CONTROLLER_PORT": os.environ.get("CUSTOMLLM_TEST_CONTROLLER_PORT", "29093"),
    "CUSTOMLLM_POSTGRES_PORT": os.environ.get("CUSTOMLLM_TEST_POSTGRES_PORT", "25432"),
    "CUSTOMLLM_LOG_LEVEL": "INFO",
    # The test process inspects every topic as the broker's admin; each worker it starts runs
    # as its own identity with its own ACLs (services/stack/services.py).
    "CUSTOMLLM_KAFKA_USERNAME": "admin",
    "CUSTOMLLM_KAFKA_SASL_MECHANISM": "PLAIN",  # the admin is defined in the broker's config
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # The guardrails worker's background PII indexer would analyse every chunk the suite writes
    # (thousands, ~80 ms each) beside the tests; the output stage analyses what it cites instead.
    # Its own tests turn it on (tests/integration/guardrails/test_stored_pii.py).
    "CUSTOMLLM_GUARDRAILS_PII_INDEXER": "0",
})
os.environ["CUSTOMLLM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{os.environ['CUSTOMLLM_KAFKA_PORT']}"
# The broker and the workers this session starts end with it, even when it is killed.
from services.stack.processes import EXIT_WITH_ENV  # noqa: E402 - reads no settings

os.environ[EXIT_WITH_ENV] = str(os.getpid())
os.environ.pop("CUSTOMLLM_DATABASE_URL", None)

import pytest  # noqa: E402

from tests.support.otlp_receiver import OtlpReceiver  # noqa: E402


@pytest.fixture(scope="session")
def otlp_receiver():
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def stack():
    """Kafka + Postgres + migrations + topics; stopped explicitly at the end (the embedded
    Postgres would otherwise outlive the test run)."""
    from tests.support.stack import LocalStack, claim, stop_abandoned_postgres

    claim(_STATE)
    stop_abandoned_postgres(_STATE.parent, int(os.environ["CUSTOMLLM_POSTGRES_PORT"]), _STATE)
    local = LocalStack.start(_STATE)
    yield local
    local.stop()
    if os.environ.get("CUSTOMLLM_TEST_KEEP_STATE") != "1":
        shutil.rmtree(_STATE, ignore_errors=True)


@pytest.fixture(scope="session")
def workers(stack, otlp_receiver):
    """One ingest and one embedder worker exporting traces to the test's OTLP receiver."""
    from tests.support.stack import Workers

    running = Workers(stack, {"CUSTOMLLM_OTEL_EXPORTER": "otlp",
                              "CUSTOMLLM_OTEL_ENDPOINT": otlp_receiver.endpoint})
    running.start_all()
    yield running
    running.stop_all()
