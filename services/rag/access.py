"""Who may see which document: privacy class ranks and ACLs, as pure functions.

Two independent gates, both must pass:

* **Privacy class.** Classes are ordered ``public < internal < confidential < restricted``; a
  principal's *clearance* is the highest class it may read. A document whose class is unknown
  counts as ``restricted`` (fail closed), which is also what migration 0002's generated
  ``documents.privacy_rank`` column does, so Python and SQL agree.
* **ACL.** A document's ``acl`` lists principals or groups. An **empty ACL means no group
  restriction**: the privacy class alone decides. A non-empty ACL requires the principal's id or
  one of its groups to be listed.

Retrieval applies the same rules inside SQL (``services.rag.retrieval_sql``) so a chunk the
scope may not see never leaves the database; ``can_see`` is the reference the tests check the
SQL against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

PRIVACY_CLASSES: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
_RANKS = {name: rank for rank, name in enumerate(PRIVACY_CLASSES)}
RESTRICTED_RANK = _RANKS["restricted"]


@dataclass(frozen=True)
class AccessScope:
    """What one request may see; built once per request and passed down to SQL."""

    principals: tuple[str, ...]  # principal id + its groups
    max_rank: int


def privacy_rank(privacy_class: str | None) -> int:
    """Rank of a document's class; unknown or missing classes fail closed as restricted."""
    if privacy_class is None:
        return RESTRICTED_RANK
    return _RANKS.get(privacy_class, RESTRICTED_RANK)


def clearance_rank(clearance: str) -> int:
    """Rank of a principal's clearance; unlike documents, an unknown clearance is an error
    (a typo must not silently grant or deny everything)."""
    try:
        return _RANKS[clearance]
    except KeyError:
        raise ValueError(
            f"unknown clearance {clearance!r}; expected one of {', '.join(PRIVACY_CLASSES)}"
        ) from None


def scope_for(principal_id: str, groups: Sequence[str], clearance: str) -> AccessScope:
    """The scope of a principal: its id first, then its distinct groups sorted, so equal
    inputs give equal scopes (and equal ``scope_key``s) whatever the group order."""
    if not principal_id:
        raise ValueError("principal_id must not be empty")
    others = sorted({g for g in groups if g and g != principal_id})
    return AccessScope(principals=(principal_id, *others), max_rank=clearance_rank(clearance))


def can_see(scope: AccessScope, privacy_class: str | None, acl: Sequence[str]) -> bool:
    """The reference rule: class within clearance and (empty ACL or a shared principal)."""
    if privacy_rank(privacy_class) > scope.max_rank:
        return False
    return not acl or not set(acl).isdisjoint(scope.principals)


def scope_key(scope: AccessScope) -> str:
    """Stable hash of what the scope can see, for keying caches per scope: principal order
    does not matter, a different clearance or principal set gives a different key."""
    payload = json.dumps({"principals": sorted(set(scope.principals)), "max_rank": scope.max_rank},
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
