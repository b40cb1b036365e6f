"""Structured, keyword-field logging for services (no f-strings in log calls)."""

from __future__ import annotations

import json
import logging
from typing import Any

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the active trace id, so logs join traces."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            data["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Set on the loggers themselves, so they stay quiet whatever a library later does to the
    # root level. Presidio logs every pattern it tries at DEBUG: a profile of the guardrails
    # worker under load found those records being built (and dropped) on every question.
    for noisy in ("aiokafka", "faust", "mode", "sentence_transformers", "httpx",
                  "presidio-analyzer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def log(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Fields go into the record (for the JSON formatter) and into the text as key=value, since
    Faust workers install their own plain formatter."""
    rendered = " ".join(f"{key}={value!r}" for key, value in fields.items())
    logger.log(level, "%s %s", message, rendered, extra={"fields": fields})
