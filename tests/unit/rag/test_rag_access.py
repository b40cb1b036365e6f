"""Access rules: privacy class within clearance AND (empty ACL or a shared principal)."""

import pytest

from services.rag.access import (
    PRIVACY_CLASSES,
    AccessScope,
    can_see,
    privacy_rank,
    scope_for,
    scope_key,
)

pytestmark = pytest.mark.unit

ANA = scope_for("ana", ["team:a", "employees"], "confidential")

CASES = [
    # (privacy_class, acl, visible to ANA, why)
    ("public", [], True, "public, no ACL"),
    ("internal", [], True, "below clearance, no ACL"),
    ("confidential", [], True, "at clearance, no ACL"),
    ("restricted", [], False, "above clearance"),
    ("restricted", ["ana"], False, "listed by id but above clearance"),
    ("internal", ["team:a"], True, "group listed"),
    ("internal", ["ana"], True, "principal id listed"),
    ("internal", ["team:b"], False, "no shared principal"),
    ("public", ["team:b"], False, "a non-empty ACL restricts even public documents"),
    ("confidential", ["team:b", "employees"], True, "one shared group is enough"),
    ("secret", [], False, "unknown class fails closed as restricted"),
    (None, [], False, "missing class fails closed as restricted"),
]


@pytest.mark.parametrize(("privacy_class", "acl", "visible", "why"), CASES,
                         ids=[case[3] for case in CASES])
def test_access_rules(privacy_class, acl, visible, why):
    assert can_see(ANA, privacy_class, acl) is visible, why


@pytest.mark.parametrize(("clearance", "visible_classes"), [
    ("public", {"public"}),
    ("internal", {"public", "internal"}),
    ("confidential", {"public", "internal", "confidential"}),
    ("restricted", set(PRIVACY_CLASSES)),
])
def test_clearance_orders_the_classes(clearance, visible_classes):
    scope = scope_for("bob", [], clearance)
    assert {c for c in PRIVACY_CLASSES if can_see(scope, c, [])} == visible_classes


def test_ranks_match_the_sql_generated_column():
    # Migration 0002: public 0, internal 1, confidential 2, anything else 3.
    assert [privacy_rank(c) for c in PRIVACY_CLASSES] == [0, 1, 2, 3]
    assert privacy_rank("Public") == 3


def test_unknown_clearance_is_an_error():
    with pytest.raises(ValueError, match="unknown clearance 'secret'"):
        scope_for("ana", [], "secret")


def test_empty_principal_is_an_error():
    with pytest.raises(ValueError):
        scope_for("", ["team:a"], "public")


def test_scope_lists_principal_first_then_sorted_distinct_groups():
    scope = scope_for("ana", ["team:b", "team:a", "team:b", "ana", ""], "internal")
    assert scope == AccessScope(principals=("ana", "team:a", "team:b"), max_rank=1)


def test_scope_key_is_stable_and_order_independent():
    a = scope_for("ana", ["team:a", "team:b"], "internal")
    b = scope_for("ana", ["team:b", "team:a"], "internal")
    assert scope_key(a) == scope_key(b)
    assert scope_key(a) == scope_key(AccessScope(("team:b", "ana", "team:a"), 1))
    # A fixed value: the key must not change between processes or releases (cache entries).
    assert scope_key(AccessScope(("ana",), 0)) == "f450c19af7ce8abc0b81055d0ebe4adc"
    assert len(scope_key(a)) == 32 and int(scope_key(a), 16) >= 0


@pytest.mark.parametrize("other", [
    scope_for("ana", ["team:a", "team:b"], "confidential"),
    scope_for("ana", ["team:a"], "internal"),
    scope_for("bob", ["team:a", "team:b"], "internal"),
])
def test_scope_key_differs_when_visibility_may_differ(other):
    assert scope_key(scope_for("ana", ["team:a", "team:b"], "internal")) != scope_key(other)
