"""The collator renders conversations with the model's own template and trains on the reply only."""

import numpy as np
import pytest

from rbft.data.collate import IGNORE, Example, VideoChatCollator
from rbft.modeling import load_processor
from rbft.world.generate import make_clip


@pytest.fixture(scope="module")
def processor():
    return load_processor("rbft-world-base")


@pytest.fixture(scope="module")
def frames():
    clips = {f"v{i}": make_clip(5, i, "x")[1][::3][:4] for i in range(2)}
    return lambda path: clips[str(path)]


EXAMPLES = [
    Example("a", "v0", "Describe the video.", "A dog is playing in the backyard during the day."),
    Example("b", "v1", "Where was this recorded?", "In the kitchen at night.", system="You are a video analyst."),
]


@pytest.mark.parametrize("side", ["right", "left"])
def test_only_the_reply_is_trained_on(processor, frames, side):
    processor.tokenizer.padding_side = side
    try:
        batch = VideoChatCollator(processor, frames)(EXAMPLES)
    finally:
        processor.tokenizer.padding_side = "right"
    assert batch["input_ids"].shape == batch["labels"].shape
    for row, example in enumerate(EXAMPLES):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE]
        assert processor.tokenizer.decode(kept) == example.target + "<|im_end|>\n"
        # padding and every prompt token (system, video, question) are masked
        masked = batch["input_ids"][row][batch["labels"][row] == IGNORE]
        assert processor.video_token_id in masked.tolist()
        assert (batch["labels"][row][batch["attention_mask"][row] == 0] == IGNORE).all()
    assert batch["video_grid_thw"].tolist() == [[2, 8, 8], [2, 8, 8]]


def test_clips_are_cut_to_whole_temporal_patches(processor):
    odd = np.zeros((5, 128, 128, 3), np.uint8)
    batch = VideoChatCollator(processor, lambda _: odd)([EXAMPLES[0]])
    assert batch["video_grid_thw"].tolist() == [[2, 8, 8]]
