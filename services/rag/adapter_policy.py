"""Which adapter versions may answer: the promoted ones, and candidates only for the
promotion gate.

An adapter name (``support``) serves its promoted version through the registry's link, so it
is always servable. A versioned name (``support@v3``) reaches one exact folder, and the folder
stays on disk after a failed gate or a retirement; without this check any caller could keep
using a version that was refused or withdrawn. The registry row decides: ``promoted`` serves
everyone, ``candidate`` only principals in ``EVALUATOR_GROUP`` (the fine-tuning gate asks its
questions as one), ``retired`` or unknown serves no one.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.events import Principal
from services.common.exceptions import CustomLLMError

EVALUATOR_GROUP = "adapter-evaluators"
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})@v?(?P<version>\d{1,9})$")


class AdapterNotServable(CustomLLMError):
    """A versioned adapter that is retired, not promoted, or not in the registry."""


def versioned(adapter: str | None) -> tuple[str, int] | None:
    match = _VERSIONED.match(adapter or "")
    return (match["name"], int(match["version"])) if match else None


def decide(adapter: str, status: str | None, principal: Principal) -> None:
    """Raise unless ``principal`` may be answered by ``adapter`` in registry ``status``."""
    if status == "promoted":
        return
    if status == "candidate" and EVALUATOR_GROUP in principal.groups:
        return
    reason = {"candidate": "is a candidate that has not passed promotion",
              "retired": "is retired", None: "is not in the adapter registry"}.get(
                  status, f"has status {status}")
    raise AdapterNotServable(f"adapter {adapter} {reason}; ask for the adapter by name to get "
                             "its promoted version")


def check_servable(engine: Engine, adapter: str | None, principal: Principal) -> None:
    found = versioned(adapter)
    if found is None or adapter is None:
        return
    name, version = found
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM adapters WHERE name = :n AND version = :v"),
                              {"n": name, "v": version}).scalar()
    decide(adapter, status, principal)
