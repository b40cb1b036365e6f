"""A worker built on the shared stream-processor base with a ``process`` that misbehaves on
purpose, so the error policy itself can be tested on the real broker, as its own process.

Values: ``bug:*`` raises a plain exception (a bug meeting an input), ``bad:*`` raises
InvalidEvent (bad data), ``down:*`` raises InfrastructureUnavailable (a dependency that stays
down; it succeeds once POISON_RECOVERED=1), ``flaky:*`` fails once then succeeds; anything
else is echoed to the output topic.
"""

from __future__ import annotations

import os

from services.common.config import get_settings
from services.common.exceptions import InvalidEvent
from services.common.processor import (
    Emit,
    Inbound,
    InfrastructureUnavailable,
    Outcome,
    RetryPolicy,
    StreamProcessor,
    attach,
    done,
)
from services.common.streaming import make_app

SOURCE = os.environ["POISON_SOURCE"]
OUTPUT, NOTICES = f"{SOURCE}.out", f"{SOURCE}.notices"
app = make_app(f"customllm-{os.environ.get('POISON_NAME', 'poison')}", get_settings())
RECOVERED = os.environ.get("POISON_RECOVERED") == "1"  # the dependency is back
_failed_once: set[bytes] = set()


async def process(message: Inbound) -> Outcome:
    value = message.value or b""
    if value.startswith(b"bug:"):
        raise ZeroDivisionError("a bug that meets this input")
    if value.startswith(b"bad:"):
        raise InvalidEvent("schema_violation", "not what this topic carries")
    if value.startswith(b"down:") and not RECOVERED:
        raise InfrastructureUnavailable("the database is down")
    if value.startswith(b"flaky:") and value not in _failed_once:
        _failed_once.add(value)
        raise RuntimeError("fails the first time only")
    return done(Emit(OUTPUT, message.key, value))


def notify(message: Inbound, error: InvalidEvent) -> tuple[Emit, ...]:
    return (Emit(NOTICES, message.key, f"{error.error_type}: {error.reason}".encode()),)


attach(app, StreamProcessor(
    service="poison", source=SOURCE, dead_letters=f"{SOURCE}.dlq", process=process,
    on_dead_letter=notify,
    retry=RetryPolicy(infrastructure_attempts=3, infrastructure_max_wait_s=0.5,
                      unexpected_attempts=3, unexpected_wait_s=0.05)))
