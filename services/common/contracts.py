"""Topic contracts: the JSON Schemas in ``schemas/``, compiled once and checked on both ends.

Every event is checked twice (by its producer and by its consumer), so the check sits on the
query path several times per request: the Python ``jsonschema`` walk of one ten-citation reply
takes ~2.6 ms on this CPU, ``jsonschema-rs`` (Rust, same Draft 2020-12 semantics) ~0.01 ms. A
payload the fast validator accepts is accepted; one it rejects is judged again by ``jsonschema``,
which words the errors (the DLQ reasons people read) and has the last word on rejection, so a
stricter corner of the fast one (ECMA ``$`` never matching before a final newline) changes
nothing that was accepted before.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker

from services.common.config import REPO_ROOT
from services.common.exceptions import ContractError

SCHEMA_DIR = REPO_ROOT / "schemas"


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


@cache
def validator(name: str) -> Draft202012Validator:
    """Compiling checks the schema itself, so a broken contract fails at start-up, not later."""
    schema = _schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@cache
def fast_validator(name: str) -> jsonschema_rs.Draft202012Validator:
    validator(name)  # the schema itself checked against the meta-schema, once
    return jsonschema_rs.Draft202012Validator(_schema(name), validate_formats=True)


def validate(name: str, payload: Any) -> None:
    """Raise ContractError naming every violation with its JSON path."""
    try:
        if fast_validator(name).is_valid(payload):
            return
    except ValueError:  # not a JSON value (a non-string key): jsonschema says what is wrong
        pass
    errors = sorted(validator(name).iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(
            f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
            for error in errors[:5]
        )
        raise ContractError(f"{name}: {details}")


def schema_names() -> list[str]:
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.json"))
