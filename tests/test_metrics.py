import numpy as np
import pytest
from sklearn.metrics import f1_score

from rbft.metrics import classification, collapsed, compare, interval, over_seeds

LABELS = ["normal", "abnormal", "vague"]


def test_classification_figures_by_hand():
    truth = ["normal", "normal", "abnormal", "vague", "abnormal", "normal"]
    pred = ["normal", "abnormal", "abnormal", "normal", "abnormal", "normal"]
    m = classification(truth, pred, LABELS)
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["abnormal"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                          "f1": pytest.approx(0.8), "support": 2}
    assert m["per_class"]["vague"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.8 + 2 * (2 / 3 * 2 / 3) / (4 / 3) + 0) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert "roc_auc" not in m


def test_binary_tasks_get_roc_and_pr_auc_from_the_label_scores():
    truth = ["normal", "abnormal", "abnormal", "normal"]
    scores = np.array([[-1.0, -3.0], [-2.0, -0.5], [-1.0, -0.9], [-0.5, -0.4]])  # log-probs of normal, abnormal
    m = classification(truth, ["normal", "abnormal", "abnormal", "abnormal"], ["normal", "abnormal"], scores)
    assert m["roc_auc"] == pytest.approx(3.5 / 4) and 0 < m["pr_auc"] <= 1  # one tie between classes counts half


def test_over_seeds_mean_and_std():
    runs = [classification(["normal", "abnormal"], p, LABELS) for p in (["normal", "abnormal"], ["normal", "normal"])]
    s = over_seeds(runs)
    assert s["accuracy"]["mean"] == pytest.approx(0.75) and s["accuracy"]["std"] == pytest.approx(np.std([1, 0.5], ddof=1))
    assert set(s["per_class_f1"]) == set(LABELS)


def test_compare_interval_holds_the_observed_difference_and_mcnemar_counts():
    rng = np.random.default_rng(1)
    truth = rng.choice(LABELS, 300, p=[0.7, 0.2, 0.1])
    good = np.where(rng.random(300) < 0.85, truth, "normal")
    bad = np.where(rng.random(300) < 0.6, truth, "normal")
    c = compare(truth, [good], [bad], LABELS, resamples=500)
    d = c["delta"]["macro_f1"]
    expected = f1_score(truth, good, labels=LABELS, average="macro") - f1_score(truth, bad, labels=LABELS, average="macro")
    assert d["delta"] == pytest.approx(expected) and d["ci95"][0] < d["delta"] < d["ci95"][1]
    assert d["ci95"][0] > 0  # a clear gain is told apart from noise
    m = c["mcnemar"][0]
    assert m["only_first_right"] == int(((good == truth) & (bad != truth)).sum()) and m["p_value"] < 0.01
    same = compare(truth, [good], [good], LABELS, resamples=100)
    assert same["delta"]["macro_f1"]["ci95"] == [0.0, 0.0] and same["mcnemar"][0]["p_value"] == 1.0
    # two seeds: the difference is the mean of the seeds' differences
    two = compare(truth, [good, bad], [bad, bad], LABELS, resamples=100)
    assert two["delta"]["macro_f1"]["delta"] == pytest.approx(expected / 2) and len(two["mcnemar"]) == 2


def test_interval_of_one_method_brackets_its_figures_and_narrows_with_more_videos():
    rng = np.random.default_rng(1)
    labels = ["normal", "abnormal"]
    truth = list(rng.choice(labels, 400, p=[0.7, 0.3]))
    guess = [t if rng.random() < 0.8 else rng.choice(labels) for t in truth]
    wide, narrow = interval(truth[:50], [guess[:50]], labels), interval(truth, [guess], labels)
    accuracy = np.mean(np.array(guess) == np.array(truth))
    assert narrow["accuracy"][0] <= accuracy <= narrow["accuracy"][1]
    assert np.diff(narrow["accuracy"]) < np.diff(wide["accuracy"])
    assert narrow["macro_f1"][0] <= f1_score(truth, guess, labels=labels, average="macro") <= narrow["macro_f1"][1]


def test_a_method_that_answers_one_label_for_every_video_is_named():
    results = {"seeds": [0, 1], "methods": {
        "zero_shot": {"predicted_counts": [{"normal": 0, "abnormal": 9, "vague": 0}]},
        "direct_sft": {"predicted_counts": [{"normal": 5, "abnormal": 3, "vague": 1}, {"normal": 9, "abnormal": 0, "vague": 0}]},
        "rbft": {"predicted_counts": [{"normal": 5, "abnormal": 3, "vague": 1}, {"normal": 4, "abnormal": 4, "vague": 1}]}}}
    warnings = collapsed(results)
    assert len(warnings) == 2
    assert warnings[0].startswith("zero_shot answers <abnormal> for every test video")
    assert warnings[1].startswith("direct_sft (seed 1) answers <normal> for every test video")


def _sklearn_bootstrap(truth, a, b, labels, resamples, seed):
    """The bootstrap one draw at a time with scikit-learn, as rbft computed it before it took every draw at once."""
    truth, a, b = np.asarray(truth), [np.asarray(x) for x in a], [np.asarray(x) for x in b]
    rng = np.random.default_rng(seed)
    one, pair = [], []
    for _ in range(resamples):
        i = rng.integers(0, len(truth), len(truth))
        t = truth[i]
        one.append(np.mean([[(x[i] == t).mean(), f1_score(t, x[i], labels=labels, average="macro", zero_division=0)]
                            for x in a], 0))
        rows = []
        for x, y in zip(a, b):
            fx = f1_score(t, x[i], labels=labels, average=None, zero_division=0)
            fy = f1_score(t, y[i], labels=labels, average=None, zero_division=0)
            rows.append(np.concatenate([[fx.mean() - fy.mean(), (x[i] == t).mean() - (y[i] == t).mean()], fx - fy]))
        pair.append(np.mean(rows, axis=0))
    return np.percentile(one, [2.5, 97.5], axis=0), np.percentile(pair, [2.5, 97.5], axis=0)


# 4000 videos: the draws are taken in blocks (of 250 here), the same draws as one at a time
@pytest.mark.parametrize("labels, n", [(LABELS, 57), ([f"c{i}" for i in range(11)], 200), (LABELS, 4000)])
def test_bootstrap_intervals_are_scikit_learns_to_the_last_bit(labels, n):
    rng = np.random.default_rng(7)
    truth = rng.choice(labels, n)
    # two seeds; some replies named no label ("") and a rare label is never predicted
    a = [np.where(rng.random(n) < 0.6, truth, rng.choice([*labels[1:], ""], n)) for _ in range(2)]
    b = [np.where(rng.random(n) < 0.4, truth, rng.choice([*labels[1:], ""], n)) for _ in range(2)]
    one, pair = _sklearn_bootstrap(truth, a, b, labels, 300, seed=3)
    got = interval(truth, a, labels, resamples=300, seed=3)
    assert got == {"accuracy": list(one[:, 0]), "macro_f1": list(one[:, 1])}
    delta = compare(truth, a, b, labels, resamples=300, seed=3)["delta"]
    assert [delta[k]["ci95"] for k in ["macro_f1", "accuracy", *[f"f1:{x}" for x in labels]]] == pair.T.tolist()
