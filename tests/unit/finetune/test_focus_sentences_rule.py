"""How many sentences about the question the answer adapter's prompt keeps: a property of each
trained version (its data card), so serving builds the prompt the served weights learnt, and a
version trained before the card recorded it is served the three sentences it was trained on."""

from __future__ import annotations

import json
import math

import pytest

from services.common.generation.answer_adapter import (
    LEGACY_FOCUS_SENTENCES,
    SHIPPED_DIR,
    AnswerAdapter,
    focus_sentences,
)
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


def test_the_card_is_written_with_the_count_the_examples_were_built_with(tmp_path):
    from services.finetune.default_adapter import write_card_markdown

    card = json.loads((SHIPPED_DIR / "datacard.json").read_text())
    card["constraint"] = {**card["constraint"], "focus_sentences": 5}
    write_card_markdown(tmp_path, card)
    assert "of the 5 sentences about the question" in (tmp_path / "README.md").read_text()


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


def test_the_local_backend_serves_the_promoted_versions_count(tmp_path):
    from services.common.config import Settings
    from services.common.generation.local_backend import LocalBackend
    from services.common.generation.local_engine import LocalEngine

    library = tmp_path / "adapters"
    library.mkdir()
    folder = _version(library, "answers", {"constraint": {"focus_sentences": 4,
                                                           "question_words_inside": True}})
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    engine = LocalEngine.from_settings(Settings(adapters_dir=library))
    served = LocalBackend(engine, answer_adapter=AnswerAdapter("answers", math.inf)) \
        ._served_answer_adapter()
    assert served is not None
    assert (served.name, served.focus_sentences, served.words_inside) == ("answers", 4, True)
