"""Turning raw Kafka values into validated payloads, and failures into DLQ records.

Every consumer goes through ``decode_json`` so the reasons in dead-letter records read the same
across services and a bad message never takes a worker down.
"""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.common import contracts
from services.common.events import DlqRecord
from services.common.exceptions import ContractError, InvalidEvent

DLQ_PAYLOAD_LIMIT = 1_000_000
ModelT = TypeVar("ModelT", bound=BaseModel)


def decode_json(value: bytes, max_bytes: int, schema: str) -> dict[str, Any]:
    """Size, encoding, JSON and schema checks, in that order (cheapest first)."""
    if len(value) > max_bytes:
        raise InvalidEvent("too_large", f"message is {len(value)} bytes, limit is {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("undecodable", f"value is not valid UTF-8: {exc}") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent("malformed_json", f"value is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidEvent("schema_violation", f"{schema}: expected a JSON object")
    try:
        contracts.validate(schema, payload)
    except ContractError as exc:
        raise InvalidEvent("schema_violation", str(exc)) from exc
    return payload


def parse_model(model: type[ModelT], payload: dict[str, Any]) -> ModelT:
    """The schema is the contract, the model the code's view of it; should they ever disagree,
    the message is still a schema violation for the DLQ, never a crash."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidEvent("schema_violation", f"{model.__name__}: {exc}") from exc


def dlq_record(
    *, topic: str, partition: int | None, offset: int | None, key: bytes | None,
    value: bytes | None, error: InvalidEvent, service: str,
) -> DlqRecord:
    """Keep the original payload (base64 when it is not text) so the message can be replayed."""
    payload: str | None
    encoding = "none"
    truncated = False
    if value is None:
        payload = None
    else:
        truncated = len(value) > DLQ_PAYLOAD_LIMIT
        try:
            # Decode first, cut after: cutting bytes could split a character and turn text
            # into "binary".
            text = value.decode("utf-8")
            payload, encoding = text.encode()[:DLQ_PAYLOAD_LIMIT].decode("utf-8", "ignore"), "utf8"
        except UnicodeDecodeError:
            kept = value[:DLQ_PAYLOAD_LIMIT]
            payload, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return DlqRecord(
        original_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        payload=payload,
        payload_encoding=encoding,  # type: ignore[arg-type]
        payload_truncated=truncated,
        payload_bytes=len(value) if value is not None else 0,
        error_type=error.error_type,  # type: ignore[arg-type]
        reason=error.reason[:4000],
        service=service,
    )
