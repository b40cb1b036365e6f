"""`customllm publish` turns a labelled folder tree into change events; doc ids must be stable
across runs and the most specific governance label must win."""

from pathlib import Path

import pytest
import typer
import yaml

from services.cli.publish import build_change, governance_for, iter_files

pytestmark = pytest.mark.unit

FLAGS = {"source": "flags", "license": "flag-licence", "privacy_class": "internal",
         "acl": ["flag-group"]}


def _write(path: Path, text: str = "Some words here.") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _meta(path: Path, data: dict) -> None:
    _write(path, yaml.safe_dump(data))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "kb"
    for name in ("a.md", "b.txt", "c.html", "d.pdf", "e.json", "notes", "sub/f.md",
                 "sub/deeper/g.TXT", "other/h.htm"):
        _write(root / name)
    _meta(root / ".customllm.yaml", {"privacy_class": "confidential"})
    _meta(root / "a.md.meta.yaml", {"title": "A"})
    return root


def test_iter_files_picks_supported_formats_only_in_sorted_order(tree):
    found = [(file.relative_to(tree).as_posix(), root) for file, root in iter_files([tree])]
    assert found == [("a.md", tree), ("b.txt", tree), ("c.html", tree), ("d.pdf", tree),
                     ("other/h.htm", tree), ("sub/deeper/g.TXT", tree), ("sub/f.md", tree)]


def test_a_single_file_is_rooted_at_its_folder_and_a_missing_path_fails(tree):
    assert list(iter_files([tree / "sub" / "f.md"])) == [(tree / "sub" / "f.md", tree / "sub")]
    with pytest.raises(typer.BadParameter, match="does not exist"):
        list(iter_files([tree / "missing"]))


def test_doc_ids_are_paths_relative_to_the_root(tree, tmp_path, monkeypatch):
    ids = [build_change(f, r, FLAGS, "kb:", 1).doc_id for f, r in iter_files([tree])]
    assert ids == ["kb:a.md", "kb:b.txt", "kb:c.html", "kb:d.pdf", "kb:other/h.htm",
                   "kb:sub/deeper/g.TXT", "kb:sub/f.md"]
    # The same tree reached through another working directory gives the same ids.
    monkeypatch.chdir(tmp_path)
    again = [build_change(f, r, FLAGS, "kb:", 1).doc_id for f, r in iter_files([Path("kb")])]
    assert again == ids


def test_governance_precedence_flags_root_subfolder_sidecar(tmp_path):
    root = tmp_path / "kb"
    file = _write(root / "sub" / "deeper" / "doc.md")
    _meta(root / ".customllm.yaml", {"license": "root-licence", "privacy_class": "confidential",
                                     "acl": ["root-group"], "title": "root title"})
    _meta(root / "sub" / ".customllm.yaml", {"privacy_class": "restricted",
                                             "acl": ["sub-group"]})
    _meta(root / "sub" / "deeper" / "doc.md.meta.yaml", {"acl": ["file-group"]})
    assert governance_for(file, root, {**FLAGS, "uri": None}) == {
        "source": "flags", "license": "root-licence", "privacy_class": "restricted",
        "acl": ["file-group"], "title": "root title"}


def test_a_sibling_folder_label_does_not_leak(tmp_path):
    root = tmp_path / "kb"
    file = _write(root / "public" / "doc.txt")
    _meta(root / "secret" / ".customllm.yaml", {"privacy_class": "restricted"})
    _meta(root / "public" / "other.txt.meta.yaml", {"privacy_class": "restricted"})
    assert governance_for(file, root, FLAGS) == FLAGS


def test_a_folder_file_that_is_not_a_mapping_is_refused(tmp_path):
    file = _write(tmp_path / "doc.txt")
    _write(tmp_path / ".customllm.yaml", "- just\n- a list\n")
    with pytest.raises(typer.BadParameter, match="mapping"):
        governance_for(file, tmp_path, FLAGS)


@pytest.mark.parametrize("name, content_type", [
    ("a.md", "text/markdown"), ("b.txt", "text/plain"), ("c.html", "text/html"),
    ("d.markdown", "text/markdown"), ("e.HTM", "text/html"), ("f.text", "text/plain"),
])
def test_build_change_content_type_follows_the_suffix(tmp_path, name, content_type):
    change = build_change(_write(tmp_path / name), tmp_path, {}, "", 3)
    assert change.content_type == content_type


def test_build_change_defaults(tmp_path):
    file = _write(tmp_path / "guides" / "Refund Policy.md", "# Refunds\n\nWithin 14 days.")
    change = build_change(file, tmp_path, FLAGS, "", 42)
    assert (change.doc_id, change.version, change.op) == ("guides/Refund Policy.md", 42, "upsert")
    assert change.content == "# Refunds\n\nWithin 14 days."
    assert change.uri == file.resolve().as_uri()
    assert change.uri.startswith("file:///") and change.uri.endswith("/Refund%20Policy.md")
    assert change.title == "Refund Policy"
    assert (change.source, change.license, change.privacy_class, change.acl) == (
        "flags", "flag-licence", "internal", ["flag-group"])
    assert change.lineage == {"publisher": "customllm publish", "path": str(file)}
    change.to_json()


def test_sidecar_overrides_doc_id_title_uri_and_extends_lineage(tmp_path):
    file = _write(tmp_path / "x.txt")
    _meta(tmp_path / "x.txt.meta.yaml", {
        "doc_id": "crm/contract-7", "title": "Contract 7", "uri": "https://crm/contracts/7",
        "content_type": "text/markdown", "lineage": {"system": "crm"}, "metadata": {"k": 1}})
    change = build_change(file, tmp_path, FLAGS, "ignored:", 1)
    assert (change.doc_id, change.title, change.uri, change.content_type) == (
        "crm/contract-7", "Contract 7", "https://crm/contracts/7", "text/markdown")
    assert change.lineage == {"publisher": "customllm publish", "path": str(file),
                              "system": "crm"}
    assert change.metadata == {"k": 1}


def test_unknown_governance_key_is_a_value_error(tmp_path):
    # publish() skips files whose build raises ValueError, so a typo must surface as one.
    file = _write(tmp_path / "x.txt")
    _meta(tmp_path / "x.txt.meta.yaml", {"licence": "typo"})
    with pytest.raises(ValueError, match="licence"):
        build_change(file, tmp_path, FLAGS, "", 1)


def test_a_sidecar_naming_an_event_field_is_a_value_error(tmp_path):
    file = _write(tmp_path / "x.txt")
    _meta(tmp_path / "x.txt.meta.yaml", {"version": 9})
    with pytest.raises(ValueError):
        build_change(file, tmp_path, FLAGS, "", 1)


def test_binary_files_travel_as_bytes_or_by_reference_never_as_text(tree, tmp_path):
    pdf = tree / "d.pdf"
    by_bytes = build_change(pdf, tree, FLAGS, "", 1)
    assert by_bytes.content is None and by_bytes.content_type == "application/pdf"
    assert by_bytes.title == "d.pdf"  # citations read "d.pdf p. 3"
    assert by_bytes.content_base64 and by_bytes.content_ref is None
    by_ref = build_change(pdf, tree, FLAGS, "", 1, ref_root=tree)
    assert (by_ref.content_ref, by_ref.content_base64) == ("d.pdf", None)
    text_by_ref = build_change(tree / "sub" / "f.md", tree, FLAGS, "", 1, ref_root=tree)
    assert (text_by_ref.content_ref, text_by_ref.content) == ("sub/f.md", None)
    with pytest.raises(ValueError, match="too big for one event"):
        build_change(pdf, tree, FLAGS, "", 1, max_event_bytes=1000)
