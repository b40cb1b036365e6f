"""API keys mapped to principals.

Keys live in a YAML file (``CUSTOMLLM_API_KEYS_FILE``)::

    keys:
      "sk-live-...": {id: alice, groups: [finance], clearance: confidential}

Without a file, one development key (``customllm-dev-key``) maps to an ``internal`` principal,
so the local stack works out of the box; production sets the file.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from pathlib import Path

import yaml
from fastapi import HTTPException, status

from services.common.events import Principal

DEV_KEY = "customllm-dev-key"
DEV_PRINCIPAL = Principal(id="dev", groups=["employees"], clearance="internal")


@lru_cache(maxsize=4)
def load_keys(path: Path | None) -> dict[str, Principal]:
    if path is None:
        return {DEV_KEY: DEV_PRINCIPAL}
    data = yaml.safe_load(Path(path).read_text()) or {}
    keys = data.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise ValueError(f"{path}: expected a non-empty 'keys' mapping")
    return {str(key): Principal.model_validate(value) for key, value in keys.items()}


def principal_for(authorization: str | None, keys: dict[str, Principal]) -> Principal:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer API key",
                            headers={"WWW-Authenticate": "Bearer"})
    presented = authorization[7:].strip()
    for key, principal in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            return principal
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key",
                        headers={"WWW-Authenticate": "Bearer"})
