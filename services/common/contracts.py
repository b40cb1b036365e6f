"""Topic contracts: the JSON Schemas in ``schemas/``, compiled once and checked on both ends."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from services.common.config import REPO_ROOT
from services.common.exceptions import ContractError

SCHEMA_DIR = REPO_ROOT / "schemas"


@cache
def validator(name: str) -> Draft202012Validator:
    """Compiling checks the schema itself, so a broken contract fails at start-up, not later."""
    path = SCHEMA_DIR / f"{name}.json"
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def validate(name: str, payload: Any) -> None:
    """Raise ContractError naming every violation with its JSON path."""
    errors = sorted(validator(name).iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(
            f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message[:300]}"
            for error in errors[:5]
        )
        raise ContractError(f"{name}: {details}")


def schema_names() -> list[str]:
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.json"))
