import numpy as np
import pytest

from services.common.linear_head import LinearHead
from services.guardrails import hate, sources
from services.guardrails.checks.hate import check_hate
from services.guardrails.hate import HateModelError
from services.guardrails.policy import ClassifierPolicy

pytestmark = pytest.mark.unit


def test_social_media_noise_is_cleaned_away():
    raw = "!!! RT @some_user: you &amp; me http://t.co/abc @other  forever!!"
    assert hate.clean(raw) == "you & me forever"


def test_a_disguised_word_reads_as_the_word():
    assert hate.views("you are a st00pid b1tch") == hate.views("You are a stoopid bitch")
    assert hate.views("A plain sentence") == ["a plain sentence"]
    assert hate.views("  @handle  ") == []


def test_labels_map_to_hate_or_not(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "hate"}\n{"text": "b", "label": "offensive"}\n'
                    '{"text": "c", "label": "neither"}\n{"text": "d", "label": "not_hate"}\n')
    texts, labels, kinds = hate.read_jsonl(path)
    assert labels == [1, 0, 0, 0] and kinds[1] == "offensive" and texts[3] == "d"
    path.write_text('{"text": "a", "label": "rude"}\n')
    with pytest.raises(HateModelError, match=":1:"):
        hate.read_jsonl(path)


def test_functional_cases_cover_hate_and_the_hard_negatives():
    cases = sources.hate_functional()
    kinds = dict(zip(cases.kinds, cases.labels, strict=True))
    for kind in ("hate_no_slur", "hate_slur", "hate_threat", "hate_dehumanize"):
        assert kinds[kind] == 1
    for kind in ("counter_quote", "negated", "neutral_identity", "offensive_not_hate"):
        assert kinds[kind] == 0


def test_training_calibrates_on_held_out_scores(embed):
    hateful = [f"all {g} are vermin and should be driven out" for g in
               ("migrants", "muslims", "jews", "gays", "women", "blacks", "gypsies", "arabs")]
    other = [f"the {w} was late again and it was damn annoying" for w in
             ("bus", "train", "pizza", "plumber", "parcel", "meeting", "report", "update",
              "flight", "taxi", "doctor", "ferry")]
    head, report = hate.train(hateful + other, [1] * 8 + [0] * 12, embed, folds=4)
    assert report.metrics["calibrated"]["fpr"] <= hate.TARGET_FPR
    assert head.meta["positives"] == 8 and head.threshold == report.threshold
    scores = hate.predict_proba(head, ["all refugees are vermin", "the bus was late"], embed)
    assert scores[0] > scores[1]
    with pytest.raises(HateModelError, match="at least"):
        hate.train(["a", "b"], [1, 0], embed)


def test_check_has_its_own_action_and_says_why_it_skips(embed):
    fires = LinearHead(np.zeros(64), 5.0, 0.5)  # p ≈ 0.99 for any text
    quiet = LinearHead(np.zeros(64), -5.0, 0.5)
    flagged = check_hate("some text", ClassifierPolicy(action="flag"), fires, embed)
    assert flagged.triggered and flagged.action == "flag" and "hateful" in flagged.reason
    assert check_hate("some text", ClassifierPolicy(), quiet, embed).action == "allow"
    assert not check_hate("x", ClassifierPolicy(threshold=1.0), fires, embed).triggered
    assert check_hate("x", ClassifierPolicy(), None, embed).action == "skip"
    assert "encoder" in check_hate("x", ClassifierPolicy(), fires, None).reason
    assert check_hate("x", ClassifierPolicy(enabled=False), fires, embed).action == "skip"


def test_hand_written_training_and_test_cases_never_overlap():
    train, test = sources.hate_train(), sources.hate_functional()
    assert not {hate.clean(t).lower() for t in train.texts} & \
        {hate.clean(t).lower() for t in test.texts}
    assert 0 < sum(train.labels) < len(train.labels)


def test_templated_cases_are_fixed_balanced_and_never_the_test_cases():
    templated = sources.hate_templated()
    assert templated == sources.hate_templated()  # seeded: the shipped head is reproducible
    kinds = {k: templated.kinds.count(k) for k in set(templated.kinds)}
    assert max(kinds.values()) == sources.TEMPLATE_CASES_PER_KIND
    assert {"counter_quote", "negated", "hate_threat", "abuse_not_protected"} <= set(kinds)
    assert 0.3 < sum(templated.labels) / len(templated.labels) < 0.7
    test = {hate.clean(t).lower() for t in sources.hate_functional().texts}
    assert not {hate.clean(t).lower() for t in templated.texts} & test


def test_template_halves_share_no_template():
    """The recipe is chosen on one half's templates while trained on the other's: a filled-in
    sentence of one half never comes from a template of the other."""
    halves = [sources.hate_templated(fold=(k, 2)) for k in (0, 1)]
    assert all(h.texts for h in halves)
    assert not set(halves[0].texts) & set(halves[1].texts)
    both = sources.hate_templated(per_kind=10_000)
    assert set(halves[0].texts) | set(halves[1].texts) <= set(both.texts)
