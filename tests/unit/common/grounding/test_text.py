"""SQuAD normalization, tokens, sentence splitting, citation markers, abstention detection."""

import pytest

from services.common.grounding.text import (
    content_tokens,
    is_abstention,
    normalize_answer,
    split_sentences,
    strip_citation_markers,
    tokens,
)

pytestmark = pytest.mark.unit

TEMPLATE = "I don't know based on the provided documents."


@pytest.mark.parametrize(("raw", "normalized"), [
    ("The Cat sat on a mat.", "cat sat on mat"),          # lower, punctuation, articles
    ("  An   apple,\tthe  pear ", "apple pear"),          # whitespace collapsed
    ("U.S. don't", "us dont"),                            # punctuation removed, not spaced
    ("“Quoted” — text…", "quoted text"),                  # Unicode punctuation too
    ("theatre another", "theatre another"),               # articles only as whole words
    ("", ""),
    (None, ""),
])
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_tokens_and_content_tokens():
    assert tokens("The cat, the hat.") == ["cat", "hat"]
    assert tokens("") == []
    assert content_tokens("It is in Paris and it is tall") == ["paris", "tall"]


def test_strip_citation_markers():
    assert strip_citation_markers("Paris [1]. Tall [2, 3] and old [1-3][4].") == \
        "Paris. Tall and old."
    assert strip_citation_markers("No markers here") == "No markers here"


def test_split_sentences():
    text = "Dr. Smith came. E.g. this stays whole. Pi is 3.14! Why?\n- bullet item\n2. numbered"
    assert split_sentences(text) == ["Dr. Smith came.", "E.g. this stays whole.",
                                     "Pi is 3.14!", "Why?", "bullet item", "numbered"]
    assert split_sentences("") == []
    assert split_sentences(None) == []


@pytest.mark.parametrize("answer", [
    TEMPLATE,
    "i don't know based on the provided documents",          # case and punctuation
    "I don’t know based on the provided documents. [1]",     # curly quote, marker appended
    "I don't know.",
    "Sorry, I cannot answer that from the provided documents.",
    "I'm unable to find this in the context.",
    "The provided documents do not mention a refund policy.",
    "The context does not contain that information.",
    "There is no information about it.",
    "Unfortunately, not enough information is given.",
    "This question cannot be answered from the sources.",
    "Unknown.",
])
def test_abstentions(answer):
    assert is_abstention(answer, TEMPLATE)


@pytest.mark.parametrize("answer", [
    "",                                                      # empty is a failure, not a refusal
    "   ",
    "Paris.",
    "The tower is in Paris. I don't know when it was painted.",  # content first
    "Information does not have to be encrypted at rest.",    # starts like a refusal phrase
    "Documents older than 7 years are deleted.",
    "Knowing this, the answer is 42.",
])
def test_not_abstentions(answer):
    assert not is_abstention(answer, TEMPLATE)


def test_template_is_enough_without_phrase():
    template = "No answer available in the corpus (code 7)."
    assert is_abstention("no answer available in the corpus code 7", template)
    assert not is_abstention("The corpus has code 7.", template)
    assert not is_abstention("Paris", None)
