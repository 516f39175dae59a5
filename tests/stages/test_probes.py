"""Linear probes read the features of the model's own forward; `rbft predict` decides as the run's calibration did."""

import json
import shutil

import numpy as np
import pytest
import torch

from rbft import probes
from rbft.config import load_config
from rbft.data.cache import FrameCache
from rbft.data.manifest import load_manifest
from rbft.modeling import load_for_videos, vision_tower
from rbft.predict import classify
from rbft.prompts import label_examples, label_target
from rbft.scoring import label_logprobs

from .test_rationales import lines


def test_features_come_from_the_forward_and_move_with_the_weights(make_config):
    config = load_config(make_config())
    records = [r for r in load_manifest(config.data.manifest, config.task.labels) if r.id != "broken"][:3]
    cache, sampling = FrameCache(), config.data.sampling()
    model, collator = load_for_videos("rbft-world-base", lambda p: cache.load(p, sampling), "float32")
    examples, targets = label_examples(config.task, records), [label_target(x) for x in config.task.labels]

    def take():
        taken = {}
        scores = label_logprobs(model, collator, examples, targets, batch_size=2, taken=taken)
        return scores, taken

    scores, before = take()
    assert before["label"].shape == before["vision"].shape == (3, model.config.text_config.hidden_size)
    # the label feature is the state the output layer turns into the reply's first token: a plain forward's last logits
    with torch.no_grad():
        for rows, batch in collator.prompt_batches(examples, 1, scoring=True):
            logits = model(**batch).logits[0, -1]
            assert torch.tensor(before["label"][rows[0]]) @ model.get_output_embeddings().weight.T == pytest.approx(
                logits, abs=1e-3)
    with torch.no_grad():  # the last language layer changes the label feature, not what the language model reads
        model.model.language_model.layers[-1].mlp.down_proj.weight.add_(0.05)
    _, after = take()
    assert np.abs(after["label"] - before["label"]).max() > 1e-3
    assert after["vision"] == pytest.approx(before["vision"], abs=1e-6)
    with torch.no_grad():  # the vision tower changes the video's tokens
        tower, _ = vision_tower(model)
        list(tower.parameters())[-1].add_(0.05)  # its last layer's
    _, moved = take()
    assert np.abs(moved["vision"] - before["vision"]).max() > 1e-3


def test_the_probe_chooses_its_features_and_regularisation_on_val():
    rng = np.random.default_rng(0)
    labels = ["a", "b"]
    y = rng.integers(0, 2, 200)
    # the label feature is noise; the vision feature holds the answer
    features = {"label": rng.normal(size=(200, 8)), "vision": rng.normal(size=(200, 8)) + 2.0 * y[:, None]}
    part = lambda f, s: {k: v[s] for k, v in f.items()}  # noqa: E731
    train, val, test = slice(0, 100), slice(100, 150), slice(150, 200)
    names = np.array(labels)[y]
    probe = probes.fit(part(features, train), names[train], part(features, val), names[val], labels)
    assert probe.kind in ("vision", "both") and probe.val_macro_f1 > 0.9
    assert (probe.log_proba(part(features, test)).argmax(1) == y[test]).mean() > 0.9
    assert np.exp(probe.log_proba(part(features, test))).sum(1) == pytest.approx(1.0)
    alone = probes.fit(part(features, train), names[train], part(features, val), names[val], labels, kinds=("label",))
    assert alone.kind == "label" and alone.val_macro_f1 < probe.val_macro_f1


def test_predict_decides_with_the_classifier_calibration(finished_run, tmp_path):
    config_path, out = finished_run
    config = load_config(config_path)
    labels = list(config.task.labels)
    rows = lines(out / "predictions" / "direct_sft-seed0.jsonl")
    videos = [config.data.manifest.parent / "videos" / f"{r['id']}.mp4" for r in rows]
    # the run's classifier: the same decisions as its predictions file, video by video
    assert [r["predicted"] for r in classify(out / "models" / "direct_sft" / "seed0", videos)] == [
        r["predicted"] for r in rows]
    # the same classifier with another tau: only the prior term moves its decisions
    model = tmp_path / "classifier"
    shutil.copytree(out / "models" / "direct_sft" / "seed0", model)
    meta = json.loads((model / "rbft_task.json").read_text())
    meta["calibration"]["tau"] = 3.0
    (model / "rbft_task.json").write_text(json.dumps(meta))
    shifted = classify(model, videos)
    prior = np.array(meta["calibration"]["log_prior"])
    for got, row in zip(shifted, rows):
        scores = np.array([got["scores"][x] for x in labels])
        assert scores == pytest.approx([row["scores"][x] for x in labels], abs=1e-4)
        assert got["predicted"] == labels[int(np.argmax(scores + 3.0 * prior))]
        assert got["raw_predicted"] == row["raw_predicted"]
    assert any(g["predicted"] == "normal" for g in shifted)  # the common label gains
