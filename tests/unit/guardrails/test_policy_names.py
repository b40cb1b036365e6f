"""Policy names come from messages: only a plain name is ever joined into a path."""

import pytest

from services.guardrails.policy import PolicyStore

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["../default", "../../etc/passwd", "/etc/passwd",
                                  "hr/../../x", "hr\x00", "", ".hidden", "a" * 65])
def test_path_like_names_fall_back_to_the_default_policy(tmp_path, name):
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "passwd.yaml").write_text("name: passwd\nversion: '1'\n")
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "default.yaml").write_text("name: default\nversion: '1'\n")
    (folder / "hr.yaml").write_text("name: hr\nversion: '1'\n")
    store = PolicyStore(folder)
    assert store.get(name).name == "default"
    assert store.get("hr").name == "hr"
