"""Calibrated decisions: only the prior term moves a decision, and tau is the one val chooses."""

import numpy as np
import pytest

from rbft import calibration as cal

LABELS = ["normal", "abnormal", "vague"]


def test_the_train_prior_is_each_label_share_add_one_smoothed():
    prior = cal.log_prior(["normal"] * 7 + ["abnormal"] * 2, LABELS)  # no vague video: not impossible
    assert np.exp(prior) == pytest.approx([8 / 12, 3 / 12, 1 / 12])


def test_a_decision_moves_only_by_tau_times_the_log_prior():
    scores = np.array([[-1.0, -0.5, -0.9], [-3.0, -2.0, -0.2], [-0.1, -4.0, -5.0], [-1.2, -1.1, -1.3]])
    prior = cal.log_prior(["normal"] * 6 + ["abnormal"] * 3 + ["vague"], LABELS)
    assert cal.none(3).decide(scores).tolist() == scores.argmax(1).tolist() == [1, 2, 0, 1]
    for tau in (-1.0, 0.5, 2.0):
        c = cal.Calibration(tau, prior)
        assert c.decide(scores).tolist() == (scores + tau * np.array(prior)).argmax(1).tolist()
        # the same vector is added to every video's scores: a row's decision does not depend on the others
        assert [int(c.decide(row[None])[0]) for row in scores] == c.decide(scores).tolist()
    # adding the prior in full favours the common label: the second video, vague by a wide margin, stays vague,
    # the fourth (abnormal by 0.1) turns normal
    assert cal.Calibration(1.0, prior).decide(scores).tolist() == [0, 2, 0, 0]


def test_tau_is_chosen_by_val_macro_f1():
    # a classifier trained on balanced draws: on val it calls a third of the normal videos abnormal by a small margin
    rng = np.random.default_rng(0)
    truth = ["normal"] * 30 + ["abnormal"] * 6 + ["vague"] * 4
    scores = np.full((40, 3), -3.0)
    for i, y in enumerate(truth):
        scores[i, LABELS.index(y)] = -1.0
        if y == "normal" and i % 3 == 0:
            scores[i, 1] = -0.8 + rng.uniform(-0.05, 0.05)  # wrong by 0.2: tau x (log 0.75 - log 0.15) > 0.2 fixes it
    prior = cal.log_prior(truth, LABELS)
    chosen = cal.choose(scores, truth, LABELS, prior)
    assert chosen.val_macro_f1_raw < 1.0 == pytest.approx(chosen.val_macro_f1)
    assert chosen.tau > 0 and (chosen.decide(scores) == [LABELS.index(y) for y in truth]).all()
    # the middle of the taus that tie for the best, not an end of the grid
    best = [t for t in cal.TAUS if (cal.Calibration(t, prior).decide(scores) == [LABELS.index(y) for y in truth]).all()]
    assert chosen.tau == best[(len(best) - 1) // 2]
    # a classifier folder keeps it as json
    again = cal.Calibration.from_json(chosen.to_json(), 3)
    assert again == chosen and cal.Calibration.from_json(None, 3) == cal.none(3)


def test_a_val_split_with_too_few_videos_of_a_label_does_not_choose_tau():
    truth = ["normal"] * 14 + ["vague"] * 2  # the quick demo's val split: no abnormal clip, two vague
    scores = np.random.default_rng(1).normal(size=(16, 3))
    prior = cal.log_prior(["normal"] * 47 + ["abnormal"] * 11 + ["vague"] * 6, LABELS)
    kept = cal.choose(scores, truth, LABELS, prior, min_val=3)
    assert kept.tau == 0.0 and "abnormal 0, vague 2" in kept.why and kept.log_prior == prior
    assert cal.unusable([], LABELS, 3) == "no val split to choose tau on"
    assert cal.choose(scores, truth, LABELS, prior, min_val=0).why is None


def test_the_label_stages_choose_an_epoch_only_on_a_val_split_with_every_label():
    from rbft.config import ExperimentConfig
    from rbft.data.manifest import VideoRecord
    from rbft.stages.stage2 import selects

    task = {"name": "t", "persona": "Expert", "question": "Which?", "labels": {x: x for x in LABELS}}
    config = ExperimentConfig.model_validate({"name": "c", "task": task, "data": {"manifest": "m.jsonl"},
                                              "model": {"name_or_path": "m"}})
    val = [VideoRecord(f"v{i}", f"v{i}.mp4", label, "val") for i, label in enumerate(["normal"] * 14 + ["vague"] * 2)]
    said = []
    # the quick demo's val split: macro-F1 there cannot see `abnormal`, and would keep an early epoch that
    # answers `normal` for everything; the last epoch is kept instead, and the run says why
    assert not selects(config, val, said.append)
    assert said == ["keeping the last epoch: too few val videos to choose an epoch on: abnormal 0, vague 2 "
                    "(training.select_min_val: 3 of each label)"]
    every = val + [VideoRecord(f"a{i}", f"a{i}.mp4", "abnormal", "val") for i in range(3)] + val[-1:]
    assert selects(config, every, said.append) and len(said) == 1
    relaxed = config.model_copy(update={"training": config.training.model_copy(update={"select_min_val": 0})})
    assert selects(relaxed, val, said.append) and not selects(relaxed, [], said.append)
    off = config.model_copy(update={"training": config.training.model_copy(update={"select_best": False})})
    assert not selects(off, every, said.append) and len(said) == 1
