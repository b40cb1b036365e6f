"""`customllm examples` against real Postgres: import (idempotent), list, approve/reject,
snapshot with its card on disk, card."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app

pytestmark = pytest.mark.integration

SETS = Path(__file__).resolve().parents[3] / "examples" / "finetune"


def _run(*args: str):
    result = CliRunner().invoke(app, ["examples", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_import_review_snapshot_and_card(stack, tmp_path):
    source = f"cli-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "set.jsonl"
    lines = []
    for line in (SETS / "heldout.jsonl").read_text().splitlines():
        record = json.loads(line)
        del record["source"]  # a line's own source would win over --source
        record["messages"][1]["content"] += f" ({source})"  # ids unique to this test
        lines.append(json.dumps(record))
    file.write_text("\n".join([*lines, "{broken"]) + "\n")

    out = _run("import", str(file), "--source", source, "--license", "CC-BY-4.0")
    assert "10 added (pending review), 0 already present, 1 bad line(s) skipped" in out
    assert f"{file}:11:" in out
    out = _run("import", str(file), "--source", source)
    assert "0 added" in out and "10 already present" in out

    listed = _run("list", "--source", source, "--json")
    ids = [json.loads(line)["example_id"] for line in listed.splitlines()]
    assert len(ids) == 10
    _run("approve", *[i[:12] for i in ids[:6]], "--reviewer", "alice")
    _run("reject", ids[6], "--note", "answer too long", "--reviewer", "bob")
    result = CliRunner().invoke(app, ["examples", "approve", ids[0], "--reviewer", "alice"])
    assert result.exit_code == 1 and "already approved" in result.output

    out = _run("snapshot", "--source", source, "--out", str(tmp_path / "snap"))
    snapshot_id = out.split("snapshot ")[1].split(":")[0]
    assert "6 example(s)" in out
    card = json.loads((tmp_path / "snap" / "card.json").read_text())
    assert card["snapshot_id"] == snapshot_id and card["reviewers"] == {"alice": 6}
    assert len((tmp_path / "snap" / "examples.jsonl").read_text().splitlines()) == 6
    assert "# Data card" in _run("card", snapshot_id[:12])

