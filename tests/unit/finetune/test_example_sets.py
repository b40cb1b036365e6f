"""The project-written demo set under examples/finetune/ parses, cites real passages, and is what
make_sets.py generates (so an edit to the documents or questions cannot silently drift)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from services.common.evaluation.testsets import read_jsonl as read_cases
from services.common.prompting.prompts import load_template
from services.finetune.examples import read_jsonl
from services.finetune.taskdata import cited_numbers

pytestmark = pytest.mark.unit

FOLDER = Path(__file__).resolve().parents[3] / "examples" / "finetune"


def _make_sets():
    spec = importlib.util.spec_from_file_location("make_sets", FOLDER / "make_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["train.jsonl", "heldout.jsonl"])
def test_sets_parse_and_cite_a_passage_of_their_prompt(name):
    good, bad = read_jsonl(FOLDER / name)
    assert not bad and len(good) >= 10
    no_answer = load_template().no_answer
    abstentions = 0
    for parsed in good:
        target = parsed.example.target
        if target == no_answer:
            abstentions += 1
            continue
        [n] = cited_numbers(target)
        assert f"[{n}] " in parsed.example.messages[1]["content"]
        assert parsed.meta["privacy_class"] in ("internal", "restricted")
    assert 0 < abstentions < len(good)


def test_files_are_what_the_generator_writes():
    module = _make_sets()
    train, _ = module.build(module.TRAIN, random.Random(1), "train")
    heldout, cases = module.build(module.HELDOUT, random.Random(2), "heldout")
    for name, lines in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        on_disk = [json.loads(line) for line in (FOLDER / name).read_text().splitlines()]
        assert on_disk == lines, f"{name} is stale: run examples/finetune/make_sets.py"
    assert read_cases(FOLDER / "heldout_cases.jsonl") == cases
