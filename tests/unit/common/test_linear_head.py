import json

import numpy as np
import pytest

from services.common import linear_head
from services.common.linear_head import HeadError, LinearHead

pytestmark = pytest.mark.unit


def test_threshold_keeps_false_positives_within_the_budget():
    labels = [0] * 10 + [1] * 3
    negatives = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.7, 0.9]
    scores = negatives + [0.8, 0.6, 0.95]
    # 10% of 10 negatives: one may reach the threshold (0.9), the next (0.7) must not.
    t = linear_head.threshold_for_fpr(labels, scores, 0.10)
    assert 0.7 < t <= 0.9
    assert sum(s >= t for s in negatives) == 1
    # No budget: above every negative.
    assert linear_head.threshold_for_fpr(labels, scores, 0.0) > 0.9
    # A budget covering all negatives: the lowest negative.
    assert linear_head.threshold_for_fpr(labels, scores, 1.0) == pytest.approx(0.05)


def test_probability_is_the_logistic_of_the_linear_score():
    head = LinearHead(np.array([2.0, -1.0]), 0.5, 0.5)
    got = head.proba(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 10.0]]))
    want = 1 / (1 + np.exp(-np.array([2.5, 0.5, -9.5])))
    assert got == pytest.approx(want)
    assert head.proba(np.zeros((0, 2))).shape == (0,)


def test_features_of_the_wrong_width_are_refused():
    with pytest.raises(HeadError, match="expects 2 features"):
        LinearHead(np.array([1.0, 1.0]), 0.0, 0.5).proba(np.ones((1, 3)))


def test_json_round_trip_and_malformed_files(tmp_path):
    head = LinearHead(np.array([0.25, -0.5, 1.0]), -0.1, 0.7, {"examples": 3})
    path = linear_head.save(head, tmp_path / "h" / "head.json")
    loaded = linear_head.load(path)
    assert loaded.threshold == 0.7 and loaded.meta == {"examples": 3}
    assert loaded.coef == pytest.approx(head.coef)
    raw = json.loads(path.read_text())
    for broken, message in (({**raw, "format": "pickle"}, "format"),
                            ({**raw, "dim": 4}, "dim says"),
                            ({**raw, "threshold": 1.5}, "outside"),
                            ({k: v for k, v in raw.items() if k != "coef"}, "not a head file")):
        path.write_text(json.dumps(broken))
        with pytest.raises(HeadError, match=message):
            linear_head.load(path)
    with pytest.raises(HeadError, match="no model"):
        linear_head.load(tmp_path / "missing.json")


def test_a_text_scores_as_its_highest_view():
    head = LinearHead(np.array([1.0, 0.0]), 0.0, 0.5)
    table = {"calm": [0.0, 1.0], "loud": [3.0, 0.0], "mild": [1.0, 0.0]}

    def embed(texts):
        return np.array([table[t] for t in texts])

    scores = linear_head.max_over_views(head, [["calm", "loud"], ["mild"], []], embed)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert scores[1] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert scores[2] == 0.0


def test_fit_separates_two_clusters():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(1, 0.3, (30, 4)), rng.normal(-1, 0.3, (30, 4))])
    y = [1] * 30 + [0] * 30
    coef, intercept = linear_head.fit(x, y)
    p = LinearHead(coef, intercept, 0.5).proba(x)
    assert (p[:30] > 0.5).all() and (p[30:] < 0.5).all()


def test_a_hidden_layer_head_scores_like_the_network_it_was_fitted_as(tmp_path):
    """An XOR-like stance: neither feature alone says which class, their combination does;
    no hyperplane separates it, one ReLU layer does, and the saved file scores the same."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(4000, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(int)
    linear = linear_head.fit_head(x, y, units=0)
    mlp = linear_head.fit_head(x, y, units=32, alpha=1e-4)
    assert mlp.hidden is not None and mlp.dim == 2 and mlp.coef.shape == (32,)
    accuracy = {name: float(((h.proba(x) >= 0.5) == y).mean())
                for name, h in (("linear", linear), ("mlp", mlp))}
    assert accuracy["linear"] < 0.7 < 0.9 < accuracy["mlp"]
    loaded = linear_head.load(linear_head.save(mlp, tmp_path / "mlp.json"))
    assert json.loads((tmp_path / "mlp.json").read_text())["format"] == linear_head.MLP_FORMAT
    assert loaded.proba(x) == pytest.approx(mlp.proba(x), abs=1e-6)
    with pytest.raises(HeadError, match="expects 2 features"):
        loaded.proba(np.ones((1, 3)))


def test_a_hidden_layer_file_that_does_not_fit_together_is_refused(tmp_path):
    x = np.random.default_rng(1).normal(size=(60, 3))
    head = linear_head.fit_head(x, (x[:, 0] > 0).astype(int), units=4)
    path = linear_head.save(head, tmp_path / "h.json")
    raw = json.loads(path.read_text())
    for broken, message in (
            ({**raw, "hidden": {**raw["hidden"], "bias": [0.0]}}, "do not fit together"),
            ({**raw, "coef": raw["coef"][:2]}, "coef has shape"),
            ({**raw, "dim": 5}, "dim says"),
            ({k: v for k, v in raw.items() if k != "hidden"}, "not a head file")):
        path.write_text(json.dumps(broken))
        with pytest.raises(HeadError, match=message):
            linear_head.load(path)
