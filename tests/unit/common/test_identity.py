"""API keys (hashed, revocable, domain-limited) and OIDC tokens against a JWKS."""

import json
import multiprocessing
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import identity
from services.common.events import Principal

pytestmark = pytest.mark.unit
ALICE = Principal(id="alice", groups=["finance"], clearance="confidential")


def test_a_key_proves_its_principal_and_only_its_hash_is_stored(tmp_path):
    path = tmp_path / "keys.yaml"
    key = identity.add_key(path, "alice-laptop", ALICE)
    assert key.startswith(identity.KEY_PREFIX) and key not in path.read_text()
    assert identity.hash_key(key) in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    who = identity.KeyStore(path).verify(key)
    assert who.principal == ALICE and who.key_id == "alice-laptop" and who.method == "api_key"


@pytest.mark.parametrize("credential", [None, "", "Bearer ", "cllm_wrong", "alice"])
def test_missing_or_unknown_credentials_are_refused(tmp_path, credential):
    path = tmp_path / "keys.yaml"
    identity.add_key(path, "k", ALICE)
    with pytest.raises(identity.Unauthenticated):
        identity.Authenticator(identity.KeyStore(path)).verify(credential)


def test_no_key_file_means_no_key_works(tmp_path):
    store = identity.KeyStore(tmp_path / "absent.yaml")
    with pytest.raises(identity.Unauthenticated):
        store.verify("customllm-dev-key")


def test_revocation_takes_effect_without_a_restart(tmp_path):
    path = tmp_path / "keys.yaml"
    key = identity.add_key(path, "k", ALICE)
    store = identity.KeyStore(path)
    assert store.verify(key).principal == ALICE
    assert identity.revoke_key(path, "k")
    with pytest.raises(identity.Unauthenticated, match="revoked"):
        store.verify(key)
    assert not identity.revoke_key(path, "k")  # already revoked: nothing to do


def test_a_key_added_later_is_seen_by_a_running_store(tmp_path):
    path = tmp_path / "keys.yaml"
    identity.add_key(path, "first", ALICE)
    store = identity.KeyStore(path)
    store.verify(identity.add_key(path, "first", ALICE))  # replaced key: the new one works
    bob = identity.add_key(path, "bob", Principal(id="bob"))
    assert store.verify(bob).principal.id == "bob"


def test_domains_limit_the_policy_a_key_may_choose(tmp_path):
    path = tmp_path / "keys.yaml"
    key = identity.add_key(path, "k", ALICE, domains=["finance"])
    who = identity.KeyStore(path).verify(key)
    assert who.domain_for(None) == "finance"
    assert who.domain_for("finance") == "finance"
    with pytest.raises(identity.Forbidden):
        who.domain_for("default")
    anyone = identity.KeyStore(path).verify(identity.add_key(path, "any", ALICE))
    assert anyone.domain_for(None) == "default" and anyone.domain_for("hr") == "hr"


def test_a_malformed_key_file_is_a_clear_error(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  plain-key: {id: alice}\n")  # the old plaintext format
    with pytest.raises(identity.CustomLLMError, match="not a valid API key file"):
        identity.KeyStore(path).verify("plain-key")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path_factory.mktemp("oidc") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    verifier = identity.JwtVerifier("https://idp.example", "customllm", jwks_file=jwks)
    return private, verifier


def _token(private, **claims):
    now = int(time.time())
    base = {"iss": "https://idp.example", "aud": "customllm", "sub": "carol", "iat": now,
            "exp": now + 300, "groups": ["security-team"], "clearance": "restricted"}
    return jwt.encode({**base, **claims}, private, algorithm="RS256", headers={"kid": "k1"})


def test_a_valid_token_maps_its_claims_to_a_principal(issuer, tmp_path):
    private, verifier = issuer
    auth = identity.Authenticator(identity.KeyStore(tmp_path / "none.yaml"), verifier)
    who = auth.verify("Bearer " + _token(private))
    assert who.principal == Principal(id="carol", groups=["security-team"],
                                      clearance="restricted")
    assert who.method == "jwt"


@pytest.mark.parametrize("claims", [{"aud": "other"}, {"iss": "https://evil.example"},
                                    {"exp": int(time.time()) - 10}])
def test_wrong_audience_issuer_or_expiry_is_refused(issuer, claims):
    private, verifier = issuer
    with pytest.raises(identity.Unauthenticated):
        verifier.verify(_token(private, **claims))


def test_a_token_signed_by_another_key_is_refused(issuer):
    _, verifier = issuer
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(identity.Unauthenticated):
        verifier.verify(_token(other))


def test_an_unknown_clearance_claim_falls_back_to_the_default(issuer):
    private, verifier = issuer
    assert verifier.verify(_token(private, clearance="top-secret")).principal.clearance \
        == "public"


def _add_keys(path: str, writer: int) -> None:
    for n in range(8):
        identity.add_key(Path(path), f"w{writer}-{n}", Principal(id=f"user-{writer}-{n}"))


def test_writers_in_several_processes_lose_no_key(tmp_path):
    path = tmp_path / "keys.yaml"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_add_keys, args=(str(path), w)) for w in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0]
    assert len(identity.read_key_file(path).keys) == 32


def test_a_key_replaced_within_one_clock_tick_is_seen(tmp_path):
    path = tmp_path / "keys.yaml"
    store = identity.KeyStore(path)
    first = identity.add_key(path, "laptop", ALICE)
    assert store.verify(first).key_id == "laptop"
    second = identity.add_key(path, "laptop", ALICE)  # same id, same size, maybe the same mtime
    with pytest.raises(identity.Unauthenticated):
        store.verify(first)
    assert store.verify(second).key_id == "laptop"
