"""The training gateway refuses bad settings before any training, and trains what it should."""

import json
from collections import Counter

import pytest
import torch

from rbft.config import StageConfig, TrainingConfig
from rbft.data.collate import Example, VideoChatCollator
from rbft.errors import ConfigError
from rbft.modeling import is_vision, load_model, load_processor
from transformers import TrainingArguments

from rbft.balance import StratifiedSampler, WeightedCollator
from rbft.training import _Trainer, prepare, set_attention_dropout, train
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


def test_attention_dropout_makes_training_forwards_stochastic_and_leaves_eval_exact(model):
    clip = make_clip(1, 0, "x")[1][::3][:4]
    batch = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)(
        [Example("a", "v", "Describe the video.", "A cat is lingering.")])
    batch.pop("labels")

    def logits(m, training: bool) -> tuple[torch.Tensor, torch.Tensor]:  # two forwards, other seeds
        m.train(training)
        torch.manual_seed(0 if training else 1)
        first = m(**batch).logits
        torch.manual_seed(1)
        return first, m(**batch).logits

    with torch.no_grad():
        assert torch.equal(*logits(model, True))  # the shipped model has no dropout of its own
        prepared = prepare(model, settings(method="full", attention_dropout=0.3))
        layers = [m for m in prepared.modules() if hasattr(m, "attention_dropout")]
        assert {m.attention_dropout for m in layers} == {0.3}
        assert any(".visual." in n for n, m in prepared.named_modules() if m in layers)  # the tower's too
        assert not torch.equal(*logits(prepared, True))
        assert torch.equal(*logits(prepared, False))


def test_a_stage_with_frozen_embeddings_trains_the_rest_and_leaves_them(model, tmp_path):
    clip = make_clip(1, 0, "x")[1][::3][:4]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    examples = [Example("a", "v", "Is it normal?", "<normal>")] * 2
    embeddings = model.get_input_embeddings().weight
    assert embeddings is model.get_output_embeddings().weight  # the shipped model ties them
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained = train(model, collator, examples, tmp_path, settings(method="full", batch_size=2, warmup_ratio=0.0),
                    StageConfig(epochs=1, learning_rate=1e-2, freeze_embeddings=True))
    after = dict(trained.named_parameters())
    name = next(n for n, p in after.items() if p is trained.get_input_embeddings().weight)
    assert not after[name].requires_grad and torch.equal(after[name], before[name])
    moved = [n for n, p in after.items() if p.requires_grad and not torch.equal(p.detach(), before[n])]
    assert moved and all(not is_vision(n) for n in moved)


def test_attention_dropout_on_a_model_without_attention_dropout_is_refused():
    with pytest.raises(ConfigError, match="training.attention_dropout"):
        set_attention_dropout(torch.nn.Linear(2, 2), 0.1)


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
        self.targets, self.batches = [], []

    def __call__(self, examples):
        self.targets += [e.target for e in examples]
        self.batches.append(Counter(e.target for e in examples))
        return super().__call__(examples)


@pytest.mark.parametrize("balance", ["none", "sample", "batch", "loss"])
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
    if balance in ("none", "loss"):  # each video once an epoch: the manifest's 6 : 1 : 1
        assert counts == {"<normal>": 36, "<abnormal>": 6, "<vague>": 6}
    elif balance == "sample":  # each label a third of the draws, give or take the draw
        assert all(10 <= counts[x] <= 22 for x in ("<normal>", "<abnormal>", "<vague>")), counts
    else:  # a third exactly, and every batch of 4 holds each label once or twice
        assert counts == {"<normal>": 16, "<abnormal>": 16, "<vague>": 16}
        assert len(collator.batches) == 12 and all(sorted(b.values()) == [1, 1, 2] for b in collator.batches)


def test_stratified_draws_hold_every_label_in_every_run_of_draws_and_follow_seed_and_epoch():
    examples = [Example(f"n{i}", "v", "Which?", "<normal>") for i in range(30)]
    examples += [Example(f"a{i}", "v", "Which?", "<abnormal>") for i in range(7)]
    examples += [Example(f"v{i}", "v", "Which?", "<vague>") for i in range(3)]
    sampler = StratifiedSampler(examples, seed=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        draws = [examples[i] for i in sampler]
        assert len(draws) == len(sampler) == 40
        for size in (3, 5, 8):  # any window of consecutive draws: each label size / 3, give or take one
            for start in range(len(draws) - size + 1):
                counts = Counter(e.target for e in draws[start:start + size])
                assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 1, (size, start, counts)
        assert {e.id for e in draws if e.target == "<vague>"} == {"v0", "v1", "v2"}  # a rare label's all, repeated
        normal = [e.id for e in draws if e.target == "<normal>"]
        assert len(normal) in (13, 14) and len(set(normal)) == len(normal)  # a third of the draws, none twice
        epochs.append([e.id for e in draws])
    assert epochs[0] != epochs[1]
    again = StratifiedSampler(examples, seed=0)
    again.set_epoch(1)
    assert [examples[i].id for i in again] == epochs[1]  # a resumed run draws what the uninterrupted one drew
    other = StratifiedSampler(examples, seed=1)
    other.set_epoch(1)
    assert [examples[i].id for i in other] != epochs[1]


def test_the_weighted_loss_is_the_trainers_own_with_each_videos_tokens_weighted(model, tmp_path):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    examples = [Example("a", "v", "Which?", "<normal>"), Example("b", "v", "Which?", "<abnormal>"),
                Example("c", "v", "Which?", "<normal>")]
    weighted = WeightedCollator(collator, examples)
    assert weighted.weights == {"<normal>": 0.75, "<abnormal>": 1.5}  # 3 / (2 labels x their count)
    trainer = _Trainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"),
                       data_collator=weighted)
    batch = weighted(examples)
    assert batch["weight"].tolist() == [0.75, 1.5, 0.75]
    model.eval()
    with torch.no_grad():
        own = float(model(**collator(examples)).loss)
        ones = float(trainer.compute_loss(model, {**batch, "weight": torch.ones(3)}))
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "weight")}).logits[:, :-1]
        wanted = batch["labels"][:, 1:]
        tokens = torch.nn.functional.cross_entropy(logits.transpose(1, 2), wanted, ignore_index=-100,
                                                   reduction="none").sum(-1)
        expected = float((tokens * batch["weight"]).sum() / (wanted != -100).sum())
        assert float(trainer.compute_loss(model, batch)) == pytest.approx(expected, rel=1e-5)
    assert ones == pytest.approx(own, rel=1e-5)  # all weights 1: the model's own loss
    assert expected != pytest.approx(own, rel=1e-3)


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_loss_takes_the_output_layer_over_the_reply_columns_only_and_equals_the_models_own(model, tmp_path,
                                                                                              side):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    processor = load_processor("rbft-world-base")
    processor.tokenizer.padding_side = side
    collator = VideoChatCollator(processor, lambda _: clip)
    trainer = _Trainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"),
                       data_collator=collator)
    model.eval()
    for examples in ([Example("a", "v", "Which?", "<normal>"), Example("b", "v", "Which one is it?", "<abnormal>")],
                     [Example("a", "v", "Describe it.", "Subjects: a bear and a trash can. Actions: the bear tips "
                              "the can over."), Example("b", "v", "Which?", "<vague>")]):
        batch = collator(examples)
        with torch.no_grad():
            loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
            assert float(loss) == pytest.approx(float(model(**batch).loss), rel=1e-5)
            first = int((batch["labels"] != -100).any(0).nonzero()[0])
            assert outputs.logits.shape[1] == batch["input_ids"].shape[1] - first + 1 < batch["input_ids"].shape[1]
            assert float(trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(40))) == pytest.approx(
                float(loss) * int((batch["labels"][:, 1:] != -100).sum()) / 40, rel=1e-5)


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


def test_the_best_epochs_weights_are_the_ones_returned(model, tmp_path):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    examples = [Example("a", "v", "Which?", "<normal>"), Example("b", "v", "Which?", "<vague>")]
    seen, scores = [], iter([0.2, 0.9, 0.1])  # the second epoch is the best, the third the last

    def select(m):
        seen.append({n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad})
        return next(scores)

    trained = train(model, collator, examples, tmp_path, settings(method="full", batch_size=2, warmup_ratio=0.0),
                    StageConfig(epochs=3, learning_rate=1e-3), select=select)
    now = {n: p.detach() for n, p in trained.named_parameters() if p.requires_grad}
    assert len(seen) == 3 and any(not torch.equal(seen[1][n], seen[2][n]) for n in now)
    assert all(torch.equal(now[n], seen[1][n]) for n in now)


@pytest.mark.parametrize("select", [None, lambda m: 0.5], ids=["last", "best"])
def test_a_finished_training_lets_go_of_its_optimizer(model, tmp_path, select):
    import weakref

    from transformers import TrainerCallback

    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    held = []

    class Note(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            held.append(weakref.ref(optimizer))

    train(model, collator, [Example("a", "v", "Which?", "<normal>")] * 2, tmp_path,
          settings(method="full", batch_size=2), StageConfig(epochs=1), callbacks=[Note()], select=select)
    # freed by the time train returns, not whenever Python's cycle collector next runs: its state (twice the
    # trainable weights for AdamW) would otherwise sit in memory while the next training of the run starts
    assert held and held[0]() is None


def test_full_fine_tuning_of_a_bfloat16_model_trains_float32_weights(tmp_path):
    bf16 = load_model("rbft-world-base", dtype="bfloat16")
    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    trained = train(bf16, collator, [Example("a", "v", "Which?", "<normal>")] * 2, tmp_path,
                    settings(method="full", batch_size=2, warmup_ratio=0.0), StageConfig(epochs=1, learning_rate=1e-6))
    dtypes = {(p.requires_grad, p.dtype) for p in trained.parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}  # the frozen tower stays as loaded
    # an update of 1e-6 is below bfloat16's resolution for weights of order 1e-2 (8 bits of mantissa)
    assert torch.equal((torch.tensor(0.01) + 1e-6).to(torch.bfloat16), torch.tensor(0.01).to(torch.bfloat16))


@pytest.mark.parametrize("checkpoints", ["resumable", "none"])
def test_checkpoints_are_the_newest_one_or_none(model, tmp_path, checkpoints):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    train(model, collator, [Example("a", "v", "Which?", "<normal>")] * 2, tmp_path,
          settings(method="full", batch_size=2, checkpoints=checkpoints), StageConfig(epochs=3))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*"))
    assert kept == (["checkpoint-3"] if checkpoints == "resumable" else [])


def test_batches_prepared_by_dataloader_workers_train_as_the_main_process_ones(tmp_path):
    clip = make_clip(1, 0, "x")[1][::3][:2]
    examples = [Example(str(i), "v", "Which?", t) for i, t in enumerate(["<normal>", "<vague>", "<abnormal>"] * 2)]
    losses = []
    for workers in (0, 2):
        collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
        out = tmp_path / f"w{workers}"
        train(load_model("rbft-world-base", dtype="float32"), collator, examples, out,
              settings(method="full", batch_size=2, logging_steps=1, dataloader_workers=workers),
              StageConfig(epochs=1))
        losses.append([r["loss"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())
                       if "loss" in r])
    assert len(losses[0]) == 3 and losses[0] == losses[1]
