"""API keys for test principals: the tests ask as real, verified callers, never by writing a
principal into the message."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from services.common import identity
from services.common.config import get_settings
from services.common.events import Principal


@lru_cache(maxsize=256)
def _issue(principal_json: str, domains: tuple[str, ...] | None) -> str:
    principal = Principal.model_validate_json(principal_json)
    key_id = "test-" + hashlib.sha1(f"{principal_json}{domains}".encode()).hexdigest()[:12]
    return identity.add_key(identity.key_file_path(get_settings()), key_id, principal,
                            list(domains) if domains else None)


def key_for(principal: Principal, domains: tuple[str, ...] | None = None) -> str:
    """An API key (registered in the stack's key file) that proves ``principal``."""
    return _issue(json.dumps(principal.model_dump(mode="json"), sort_keys=True), domains)


def bearer(principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {key_for(principal)}"}


GATEWAY_USER = Principal(id="dev", groups=["employees"], clearance="internal")
