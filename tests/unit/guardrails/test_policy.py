import os
from pathlib import Path

import pytest

from services.guardrails import policy as policy_mod
from services.guardrails.policy import (
    PACKAGED_POLICIES,
    PolicyError,
    PolicyStore,
    load_policy_file,
    parse_policy,
)

pytestmark = pytest.mark.unit

GOOD = "name: {name}\nversion: '{version}'\ninput:\n  toxicity: {{threshold: {tox}}}\n"


def _write(folder: Path, name: str, text: str, bump: int = 0) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    stat = path.stat()
    # A distinct mtime even when two writes land in the same clock tick.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))
    return path


@pytest.fixture
def fast_reload(monkeypatch):
    monkeypatch.setattr(policy_mod, "RELOAD_CHECK_S", 0.0)


def test_packaged_default_policy_is_valid():
    policy = load_policy_file(PACKAGED_POLICIES / "default.yaml")
    assert policy.name == "default"
    assert policy.input.pii.action_for("SECRET") == "block"
    assert "EMPLOYEE_ID" in policy.input.pii.patterns
    assert policy.policy_version.startswith("default@")


@pytest.mark.parametrize("text, problem", [
    ("name: x\nversion: '1'\ninput: {toxicity: {threshold: 1.5}}\n", "threshold"),
    ("name: x\nversion: '1'\ninput: {toxicty: {threshold: 0.5}}\n", "toxicty"),
    ("name: x\nversion: '1'\ninput: {pii: {entities: {EMAIL_ADDRESS: obliterate}}}\n",
     "EMAIL_ADDRESS"),
    ("name: x\nversion: '1'\ninput: {over_length: ignore}\n", "over_length"),
    ("name: x\nversion: '1'\ninput: {max_chars: 0}\n", "max_chars"),
    ("name: x\nversion: '1'\ninput: {pii: {patterns: {lower_case: {pattern: 'x'}}}}\n",
     "lower_case"),
    ("name: x\nversion: '1'\ndocuments: {marked_chunks: delete}\n", "marked_chunks"),
    ("- just\n- a list\n", "mapping"),
    ("name: [unclosed\n", "YAML"),
])
def test_invalid_policies_are_refused_with_the_reason(text, problem):
    with pytest.raises(PolicyError, match=problem):
        parse_policy(text)


def test_file_name_must_match_policy_name(tmp_path):
    path = _write(tmp_path, "billing", GOOD.format(name="other", version=1, tox=0.8))
    with pytest.raises(PolicyError, match="must match"):
        load_policy_file(path)


def test_version_names_content_hash():
    a = parse_policy(GOOD.format(name="p", version=1, tox=0.8))
    b = parse_policy(GOOD.format(name="p", version=1, tox=0.7))
    assert a.policy_version != b.policy_version  # same declared version, different content


def test_unknown_domain_falls_back_to_default(tmp_path):
    _write(tmp_path, "default", GOOD.format(name="default", version=1, tox=0.8))
    assert PolicyStore(tmp_path).get("no-such-domain").name == "default"


def test_edits_are_picked_up_without_restart(tmp_path, fast_reload):
    _write(tmp_path, "default", GOOD.format(name="default", version=1, tox=0.8))
    store = PolicyStore(tmp_path)
    assert store.get().input.toxicity.threshold == 0.8
    _write(tmp_path, "default", GOOD.format(name="default", version=2, tox=0.6), bump=1)
    reloaded = store.get()
    assert reloaded.version == "2" and reloaded.input.toxicity.threshold == 0.6


def test_a_broken_edit_keeps_the_last_good_version(tmp_path, fast_reload):
    _write(tmp_path, "default", GOOD.format(name="default", version=1, tox=0.8))
    store = PolicyStore(tmp_path)
    good = store.get()
    _write(tmp_path, "default", "name: default\nversion: '2'\ninput: {toxicity: {threshold: 9}}\n",
           bump=1)
    assert store.get() == good
    assert "threshold" in store.errors()["default"]
    _write(tmp_path, "default", GOOD.format(name="default", version=3, tox=0.5), bump=2)
    assert store.get().version == "3" and store.errors() == {}


def test_a_policy_folder_without_a_default_falls_back_to_the_packaged_one(tmp_path):
    (tmp_path / "hr.yaml").write_text("name: hr\nversion: '1'\n")
    store = PolicyStore(tmp_path)
    assert store.get("hr").name == "hr"
    assert store.get("sales").name == "default"
    assert store.get().name == "default"
