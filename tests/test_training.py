"""The training gateway refuses bad settings before any training, and trains what it should."""

import json
from collections import Counter

import pytest
import torch

from rbft.config import StageConfig, TrainingConfig
from rbft.data.collate import Example, VideoChatCollator
from rbft.errors import ConfigError
from rbft.modeling import is_vision, load_model, load_processor
from rbft.training import prepare, train
from rbft.world.generate import make_clip


def settings(**training) -> TrainingConfig:
    """Training settings with no gradient accumulation, weight decay or reporters, unless named."""
    return TrainingConfig(**{"gradient_accumulation": 1, "weight_decay": 0.0, "report_to": [], **training})


@pytest.fixture()
def model():
    return load_model("rbft-world-base", dtype="float32")


def test_unknown_target_module_is_refused(model):
    with pytest.raises(ConfigError, match="target_modules.*not_a_layer"):
        prepare(model, settings(method="lora", target_modules=["q_proj", "not_a_layer"]))


def test_empty_training_split_is_refused(model, tmp_path):
    with pytest.raises(ConfigError, match="training split is empty"):
        train(model, None, [], tmp_path, settings(), StageConfig())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_one_step_moves_trainable_and_only_trainable_parameters(model, tmp_path, method):
    clip = make_clip(1, 0, "x")[1][::3][:4]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    examples = [Example("a", "v", "Describe the video.", "A cat is lingering.")] * 2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained = train(model, collator, examples, tmp_path, settings(method=method, batch_size=2, warmup_ratio=0.0),
                    StageConfig(epochs=1, learning_rate=1e-2))
    moved = {n.replace("base_model.model.", "").replace(".base_layer", ""): not torch.equal(before.get(
        n.replace("base_model.model.", "").replace(".base_layer", ""), p), p.detach())
        for n, p in trained.named_parameters() if "lora_" not in n}
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    if method == "full":
        assert trainable and all(moved[n] for n in trainable)
        assert not any(moved[n] for n in moved if n not in trainable)
        assert all(is_vision(n) for n in before if n not in trainable)
    else:
        assert trainable and all("lora_" in n for n in trainable)
        assert not any(moved.values())  # the base weights stay frozen under LoRA
        lora = {n: p for n, p in trained.named_parameters() if "lora_B" in n}
        assert lora and all(p.abs().sum() > 0 for p in lora.values())  # B starts at zero; a step moves it
        assert not any(is_vision(n.replace("base_model.model.", "")) for n in lora)
    assert (tmp_path / "train_log.jsonl").exists()


class _Seen(VideoChatCollator):
    """The real collator, noting each batch's replies: what the trainer drew."""

    def __init__(self, *args):
        super().__init__(*args)
        self.targets = []

    def __call__(self, examples):
        self.targets += [e.target for e in examples]
        return super().__call__(examples)


@pytest.mark.parametrize("balance", ["none", "sample"])
def test_balanced_sampling_draws_the_rare_labels_as_often_as_the_common_one(model, tmp_path, balance):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = _Seen(load_processor("rbft-world-base"), lambda _: clip)
    examples = [Example(f"n{i}", "v", "Which?", "<normal>") for i in range(6)]
    examples += [Example("a", "v", "Which?", "<abnormal>"), Example("v", "v", "Which?", "<vague>")]
    train(model, collator, examples, tmp_path, settings(method="full", batch_size=4, warmup_ratio=0.0, logging_steps=1),
          StageConfig(epochs=1, min_steps=12, learning_rate=1e-4), balance=balance)
    steps = [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert max(steps) == 12  # one epoch is 2 steps; min_steps makes it 12
    counts = Counter(collator.targets)
    assert sum(counts.values()) == 48
    if balance == "none":  # each video once an epoch: the manifest's 6 : 1 : 1
        assert counts == {"<normal>": 36, "<abnormal>": 6, "<vague>": 6}
    else:  # each label a third of the draws, give or take the draw
        assert all(10 <= counts[x] <= 22 for x in ("<normal>", "<abnormal>", "<vague>")), counts


def test_many_epochs_of_a_tiny_set_are_scored_a_few_times_and_after_the_last(model, tmp_path):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    examples = [Example("a", "v", "Which?", "<normal>"), Example("b", "v", "Which?", "<vague>")]
    scored = []
    train(model, collator, examples, tmp_path, settings(method="full", batch_size=2, warmup_ratio=0.0, logging_steps=1),
          StageConfig(epochs=1, min_steps=14), select=lambda m: scored.append(len(scored)) or -len(scored))
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_score" in r] == [3, 6, 9, 12, 14]  # every 3rd of 14 epochs, and the last
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 3  # the first scored highest
