"""Roles of the people who use the platform, derived from a verified identity's groups.

The seed names three kinds of people besides engineers: data stewards (approve sources,
privacy classes and adapters), subject-matter experts (review supervision examples) and
readers. A role is never stored or declared: it is computed from the groups of the
credential that was just verified (an API key's principal, an OIDC token's groups claim), so
revoking a key or removing someone from a group removes the role on the next request.

Default mapping (override with ``CUSTOMLLM_ROLE_GROUPS``, JSON ``{"admin": [...], ...}``):

========  ============================  ===========================================
role      groups                        may
========  ============================  ===========================================
admin     ``admins``, ``operators``     everything a steward may
steward   ``stewards``                  audits of anyone's answers, guardrail
                                        decisions, promote/retire adapters, leave
                                        feedback on any request
sme       ``smes``, ``reviewers``       review supervision examples
viewer    any verified identity         catalog, evaluation runs, registry, its own
                                        answers' audits
========  ============================  ===========================================

Roles are ordered: each includes the ones below it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Literal

Role = Literal["viewer", "sme", "steward", "admin"]
ORDER: tuple[Role, ...] = ("viewer", "sme", "steward", "admin")
DEFAULT_GROUPS: Mapping[Role, frozenset[str]] = {
    "admin": frozenset({"admins", "operators"}),
    "steward": frozenset({"stewards"}),
    "sme": frozenset({"smes", "reviewers"}),
}
ENV = "CUSTOMLLM_ROLE_GROUPS"


def role_groups(environ: Mapping[str, str] | None = None) -> Mapping[Role, frozenset[str]]:
    """The configured mapping; an invalid override fails loudly rather than granting roles
    nobody meant to grant."""
    raw = (environ if environ is not None else os.environ).get(ENV)
    if not raw:
        return DEFAULT_GROUPS
    data = json.loads(raw)
    if not isinstance(data, dict) or not set(data) <= set(ORDER[1:]):
        raise ValueError(f"{ENV} must map admin/steward/sme to lists of groups")
    return {role: frozenset(str(g) for g in groups) for role, groups in data.items()}


def role_for(groups: Iterable[str], mapping: Mapping[Role, frozenset[str]] | None = None) -> Role:
    """The highest role any of the groups grants; ``viewer`` for everyone else."""
    mapping = mapping if mapping is not None else role_groups()
    have = set(groups)
    for role in reversed(ORDER[1:]):
        if have & mapping.get(role, frozenset()):
            return role
    return "viewer"


def at_least(role: Role, needed: Role) -> bool:
    return ORDER.index(role) >= ORDER.index(needed)
