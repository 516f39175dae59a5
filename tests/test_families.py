"""Every supported VLM family, as a tiny random model from its real config: collation and one training step."""

import numpy as np
import pytest
import torch

from rbft.data.collate import IGNORE, Example, VideoChatCollator
from rbft.data.video import Clip, VideoInfo
from rbft.scoring import label_logprobs, label_logprobs_full
from rbft.config import StageConfig, TrainingConfig
from rbft.modeling import is_vision
from rbft.training import _Trainer, train
from transformers import TrainingArguments

from .families import FAMILIES, build

END = {"qwen2_vl": "<|im_end|>\n", "qwen2_5_vl": "<|im_end|>\n", "qwen3_vl": "<|im_end|>\n",
       "smolvlm": "<end_of_utterance>\n", "llava_onevision": "<|im_end|>", "internvl": "<|im_end|>"}
EXAMPLES = [Example("a", "v", "Is anything wrong here?", "<abnormal>", "You are a Smart Home Security Expert."),
            Example("b", "v", "Describe the video by its subjects.", "Subjects: a bear and a trash can.")]


def clip() -> Clip:
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    info = VideoInfo(width=64, height=64, duration_s=2.0, rotation=0, codec="h264", container="mp4", frame_count=8)
    return Clip(frames, np.array([0.25, 0.75, 1.25, 1.75]), info)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_trains_on_the_reply_only(family, side):
    processor, _ = build(family)
    processor.tokenizer.padding_side = side
    batch = VideoChatCollator(processor, lambda _: clip())(EXAMPLES)
    assert batch["input_ids"].shape == batch["labels"].shape
    for row, example in enumerate(EXAMPLES):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE]
        # SmolVLM's template ends the generation prompt with "Assistant:"; the reply's space is the model's
        lead = " " if family == "smolvlm" else ""
        assert processor.tokenizer.decode(kept) == lead + example.target + END[family]
        assert (batch["labels"][row][batch["attention_mask"][row] == 0] == IGNORE).all()


def test_frame_times_reach_the_prompt_of_families_that_print_them():
    processor, _ = build("qwen3_vl")
    text = processor.tokenizer.decode(VideoChatCollator(processor, lambda _: clip())([EXAMPLES[0]])["input_ids"][0])
    assert "<0.5 seconds>" in text and "<1.5 seconds>" in text  # the mean time of each pair of frames


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["full", "lora"])
def test_one_step_moves_every_trainable_parameter_and_no_frozen_one(family, method, tmp_path):
    processor, model = build(family)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = TrainingConfig(method=method, batch_size=2, gradient_accumulation=1, warmup_ratio=0.0, weight_decay=0.0,
                              lora_r=4, report_to=[])
    trained = train(model, VideoChatCollator(processor, lambda _: clip()), EXAMPLES, tmp_path, settings,
                    StageConfig(epochs=1, learning_rate=1e-2))
    strip = lambda n: n.replace("base_model.model.", "").replace(".base_layer", "")  # noqa: E731
    params = {strip(n): p for n, p in trained.named_parameters() if "lora_" not in n}
    trainable = {strip(n) for n, p in trained.named_parameters() if p.requires_grad}
    frozen = [n for n in params if n not in trainable]
    assert not any(not torch.equal(before[n], params[n].detach()) for n in frozen)
    if method == "full":
        # embedding rows of tokens absent from the batch get no gradient; everything else must move
        dense = [n for n in trainable if "embed_tokens" not in n and "lm_head" not in n]
        still = [n for n in dense if torch.equal(before[n], params[n].detach())]
        assert dense and not still, still
        assert frozen and all(is_vision(n) for n in frozen)
    else:
        lora = {n: p for n, p in trained.named_parameters() if "lora_B" in n}
        assert lora and all(p.abs().sum() > 0 for p in lora.values())
        assert all("lora_" in n for n in trainable)
        assert not any(is_vision(strip(n)) for n in lora)


# LLaVA-OneVision's template (used for InternVL here too) renders the assistant turn unlike its generation
# prompt (`assistant ` + newline against `assistant` + newline): replies are scored after the trained context
@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_label_scoring_equals_one_sequence_per_label(family):
    processor, model = build(family)
    collator, side = VideoChatCollator(processor, lambda _: clip()), processor.tokenizer.padding_side
    # prompts of different lengths: the batched prompts are left-padded, the replies continue each row
    examples = [Example(str(i), "v", "Is anything wrong here?" + " Look closely." * i, system="An expert.")
                for i in range(4)]
    targets = ["<normal>", "<abnormal>", "<vague>"]
    fast = label_logprobs(model, collator, examples, targets, batch_size=3)
    reference = label_logprobs_full(model, collator, examples, targets, batch_size=1)
    assert fast.shape == (4, 3)
    assert np.abs(fast - reference).max() < 1e-4
    assert processor.tokenizer.padding_side == side  # restored


@pytest.mark.parametrize("family", FAMILIES)
def test_the_trainers_loss_over_the_reply_columns_is_the_models_own(family, tmp_path):
    processor, model = build(family)
    model.eval()
    batch = VideoChatCollator(processor, lambda _: clip())(EXAMPLES)
    trainer = _Trainer(model=model, args=TrainingArguments(str(tmp_path), use_cpu=True, report_to="none"))
    with torch.no_grad():
        assert float(trainer.compute_loss(model, batch)) == pytest.approx(float(model(**batch).loss), rel=1e-5)
