"""The answer adapter's prompt is a property of each trained version (its data card): how many
sentences about the question it keeps, and which compact prompt it was. Serving builds the
prompt the served weights learnt (a card without the count means the three sentences older
versions were trained on) and refuses weights of a prompt it no longer builds."""

from __future__ import annotations

import json
import math

import pytest

from services.common.generation.answer_adapter import (
    LEGACY_FOCUS_SENTENCES,
    LEGACY_PROMPT_VERSION,
    SHIPPED_DIR,
    AnswerAdapter,
    focus_sentences,
    prompt_version,
)
from services.common.generation.evidence_prompt import PROMPT_VERSION
from services.finetune.answer_data import DataSpec, Question, encode_example

pytestmark = pytest.mark.unit

NO_ANSWER = "I don't know based on the provided documents."
ENDS = frozenset({0, 1, 2})
PASSAGES = ((1, "The tower is in Paris. The tower was built in 1889. The tower is made of iron."),
            (2, "Gustave Eiffel's company designed the tower. Many artists criticised it."))


def _version(tmp_path, name: str, card: dict | None):
    folder = tmp_path / name
    folder.mkdir()
    if card is not None:
        (folder / "datacard.json").write_text(json.dumps(card))
    return folder


def test_serving_reads_the_count_from_the_versions_data_card(tmp_path):
    assert focus_sentences(_version(tmp_path, "v3", {"constraint": {"focus_sentences": 4}})) == 4


@pytest.mark.parametrize("card", [None, {"adapter": "answers"},
                                  {"constraint": {"question_words_inside": True}},
                                  {"constraint": {"focus_sentences": 0}},
                                  {"constraint": {"focus_sentences": True}},
                                  {"constraint": {"focus_sentences": "4"}},
                                  {"constraint": ["focus_sentences", 4]}])
def test_a_card_without_a_valid_count_means_the_three_sentences_of_older_versions(tmp_path,
                                                                                  card):
    assert focus_sentences(_version(tmp_path, "v1", card)) == LEGACY_FOCUS_SENTENCES == 3


def test_the_shipped_adapter_is_served_the_prompt_its_recipe_trains():
    assert focus_sentences(SHIPPED_DIR) == DataSpec().focus_sentences


def _kept_sentences(example, tokenizer) -> int:
    prompt = tokenizer.decode(example.input_ids)
    return sum(prompt.count(s) for s in ("The tower is in Paris.", "built in 1889.",
                                         "made of iron.", "designed the tower.",
                                         "criticised it."))


def test_examples_keep_the_count_of_sentences_they_are_built_with(smol_tokenizer):
    q = Question("q1", "Eiffel", "When was the tower built?", ("1889",), PASSAGES, 1,
                 "answerable")
    one = encode_example(smol_tokenizer, ENDS, q, NO_ANSWER, focus_sentences=1)
    four = encode_example(smol_tokenizer, ENDS, q, NO_ANSWER, focus_sentences=4)
    assert one is not None and four is not None
    assert _kept_sentences(one, smol_tokenizer) == 1
    assert _kept_sentences(four, smol_tokenizer) == 4
    assert smol_tokenizer.decode([t for t in four.labels if t != -100][:-1]).strip() \
        == "1889 [1]"


def _served(tmp_path, card: dict):
    from services.common.config import Settings
    from services.common.generation.local_backend import LocalBackend
    from services.common.generation.local_engine import LocalEngine

    library = tmp_path / "adapters"
    library.mkdir()
    folder = _version(library, "answers", card)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    engine = LocalEngine.from_settings(Settings(adapters_dir=library))
    backend = LocalBackend(engine, answer_adapter=AnswerAdapter("answers", math.inf))
    return backend._served_answer_adapter()


def test_the_local_backend_serves_the_promoted_versions_count(tmp_path):
    served = _served(tmp_path, {"constraint": {"focus_sentences": 4,
                                               "question_words_inside": True}})
    assert served is not None
    assert (served.name, served.focus_sentences, served.words_inside) == ("answers", 4, True)


def test_a_version_trained_on_the_current_prompt_is_served(tmp_path):
    assert _served(tmp_path, {"prompt_version": PROMPT_VERSION}) is not None


def test_a_version_trained_on_another_prompt_is_not_served(tmp_path, caplog):
    # its weights learnt a prompt this server no longer builds: the base model answers under
    # the constraint instead, and the log says why (once per version, not per request)
    assert _served(tmp_path, {"prompt_version": "compact-v0"}) is None
    assert [r for r in caplog.records if "another prompt" in r.getMessage()]


def test_a_card_without_a_prompt_version_means_the_first_compact_prompt(tmp_path):
    assert prompt_version(_version(tmp_path, "old", {"adapter": "answers"})) \
        == LEGACY_PROMPT_VERSION == "compact-v1"
    assert prompt_version(SHIPPED_DIR) == PROMPT_VERSION


def test_a_built_card_records_the_prompt_and_count_serving_will_use(tmp_path):
    import torch
    from safetensors.torch import save_file

    from services.finetune.default_adapter import CONFIG, finalize

    out = tmp_path / "answers"
    out.mkdir()
    save_file({"w": torch.ones(2, 2)}, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({"target_modules": ["v", "q"]}))
    counts = {"answerable": {"available": 2, "used": 1, "skipped": 1}, "total": 1,
              "prompt_tokens_mean": 200.0}
    squad = tmp_path / "squad.json"
    squad.write_text("{}")
    finalize(out, squad, squad, DataSpec(focus_sentences=4), CONFIG, counts,
             {"steps": 1, "final_loss": 0.5, "stop_after_steps": None, "train_s": 1.0,
              "device": "cpu"})
    assert focus_sentences(out) == 4
    assert prompt_version(out) == PROMPT_VERSION
    assert "of the 4 sentences about the question" in (out / "README.md").read_text()
