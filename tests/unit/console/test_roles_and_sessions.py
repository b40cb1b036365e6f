"""Roles from groups, who may rate an answer, and the console's session rules: pure logic,
with a real key file on disk and no server."""

from __future__ import annotations

import json
import time

import pytest

from services.common import identity, roles
from services.common.events import Principal
from services.common.feedback import FeedbackRefused, check_may_rate
from services.console.app import _safe_next
from services.console.session import Sessions, csrf_matches, load_secret

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("groups, role", [
    ([], "viewer"), (["employees"], "viewer"), (["smes"], "sme"), (["reviewers"], "sme"),
    (["stewards", "smes"], "steward"), (["admins"], "admin"), (["employees", "operators"], "admin"),
])
def test_the_highest_role_any_group_grants(groups, role):
    assert roles.role_for(groups) == role


def test_roles_include_the_ones_below_them():
    assert roles.at_least("admin", "steward") and roles.at_least("steward", "sme")
    assert not roles.at_least("sme", "steward") and roles.at_least("viewer", "viewer")


def test_the_mapping_can_be_replaced_and_a_bad_one_fails_loudly():
    mapping = roles.role_groups({roles.ENV: json.dumps({"steward": ["compliance"]})})
    assert roles.role_for(["compliance"], mapping) == "steward"
    assert roles.role_for(["stewards"], mapping) == "viewer"  # the default no longer applies
    with pytest.raises(ValueError):
        roles.role_groups({roles.ENV: json.dumps({"superuser": ["x"]})})


def _who(pid: str, *groups: str) -> identity.Identity:
    return identity.Identity(Principal(id=pid, groups=list(groups)), "api_key", f"k-{pid}")


def test_only_the_asker_or_a_steward_may_rate_an_answer():
    check_may_rate(_who("alice"), "alice")
    check_may_rate(_who("sam", "stewards"), "alice")
    with pytest.raises(FeedbackRefused) as refused:
        check_may_rate(_who("bob", "smes"), "alice")
    assert refused.value.code == "forbidden"
    with pytest.raises(FeedbackRefused) as unknown:
        check_may_rate(_who("alice"), None)
    assert unknown.value.code == "unknown_request"


@pytest.fixture
def sessions(tmp_path):
    keys = tmp_path / "api-keys.yaml"
    authenticator = identity.Authenticator(identity.KeyStore(keys))
    return Sessions(load_secret(tmp_path / "console.key"), 3600, False, authenticator), keys


def test_a_session_holds_the_keys_digest_and_ends_when_the_key_is_revoked(sessions):
    store, keys = sessions
    key = identity.add_key(keys, "sme-key", Principal(id="sita", groups=["smes"]))
    data = store.login(key)
    assert key not in json.dumps(data) and data["digest"] == identity.hash_key(key)
    user = store.user(data)
    assert (user.id, user.role) == ("sita", "sme")
    identity.revoke_key(keys, "sme-key")
    assert store.user(data) is None


def test_a_login_gets_a_fresh_csrf_token_and_bad_credentials_none(sessions):
    store, keys = sessions
    key = identity.add_key(keys, "v", Principal(id="vera"))
    assert store.login(key)["csrf"] != store.login(key)["csrf"]
    with pytest.raises(identity.Unauthenticated):
        store.login("cllm_unknown")
    assert store.user({"csrf": "x"}) is None
    assert store.user({"csrf": "x", "method": "jwt", "exp": time.time() - 1,
                       "principal": {"id": "old"}}) is None


def test_the_signing_key_is_made_once_and_private(tmp_path):
    path = tmp_path / "secrets" / "console.key"
    first = load_secret(path)
    assert load_secret(path) == first and len(first) >= 48
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("given, ok", [("abc", True), ("abd", False), ("", False),
                                       (None, False)])
def test_csrf_tokens_compare_exactly(given, ok):
    assert csrf_matches({"csrf": "abc"}, given) is ok


@pytest.mark.parametrize("target, safe", [
    ("/review?status=pending", "/review?status=pending"), ("https://evil.example/", "/catalog"),
    ("//evil.example", "/catalog"), ("/\\evil", "/catalog"), ("catalog", "/catalog"),
])
def test_after_login_only_a_path_on_this_site(target, safe):
    assert _safe_next(target) == safe


def test_an_oidc_token_opens_a_session_that_ends_with_the_token(tmp_path):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    verifier = identity.JwtVerifier("https://idp.example", "customllm", jwks_file=jwks)
    store = Sessions(load_secret(tmp_path / "console.key"), 3600, False,
                     identity.Authenticator(identity.KeyStore(tmp_path / "none.yaml"), verifier))
    now = int(time.time())
    token = jwt.encode({"iss": "https://idp.example", "aud": "customllm", "sub": "carol",
                        "iat": now, "exp": now + 60, "groups": ["stewards"],
                        "clearance": "confidential"}, private, algorithm="RS256",
                       headers={"kid": "k1"})
    data = store.login(token)
    assert token not in json.dumps(data) and data["exp"] == now + 60
    user = store.user(data)
    assert (user.id, user.role, user.principal.clearance) == ("carol", "steward", "confidential")
    assert store.user({**data, "exp": now - 1}) is None
