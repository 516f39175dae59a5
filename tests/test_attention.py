import numpy as np
import pytest

from rbft.attention import coverage, focus, label_attention, label_attentions, scaled
from rbft.data.collate import Example, VideoChatCollator
from rbft.modeling import load_model, load_processor
from rbft.world.generate import make_clip


def test_label_attention_on_the_shipped_model_is_a_map_per_temporal_patch():
    model = load_model("rbft-world-base", dtype="float32", attn_implementation="eager")
    clip = make_clip(1, 0, "x")[1][:8]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    grid = label_attention(model, collator, Example("a", "v", "Is this normal?", "<normal>"))
    assert grid.shape == (4, 8, 8)  # 8 frames in pairs, 16-pixel patches of 128x128 frames
    assert grid.sum() == pytest.approx(1.0) and (grid >= 0).all() and grid.std() > 0
    shown = scaled(grid)
    assert shown.min() == 0 and shown.max() == 1


@pytest.mark.parametrize("side", ["right", "left"])
def test_maps_drawn_in_a_batch_are_each_videos_own(side):
    """Conversations of different lengths (labels of 3 and 4 tokens, different prompts) padded into one batch:
    each map is the one its conversation gets alone."""
    model = load_model("rbft-world-base", dtype="float32", attn_implementation="eager")
    clips = {v: make_clip(1, k, v)[1][:8] for k, v in enumerate("abc")}
    processor = load_processor("rbft-world-base")
    processor.tokenizer.padding_side = side
    collator = VideoChatCollator(processor, clips.__getitem__)
    examples = [Example("a", "a", "Is this normal?", "<normal>"),
                Example("b", "b", "Is this normal or not?", "<abnormal>"), Example("c", "c", "Is it?", "<vague>")]
    together = label_attentions(model, collator, examples, batch_size=3)
    # a budget for the attention weights that holds one conversation at a time: the same maps
    one_by_one = label_attentions(model, collator, examples, batch_size=3, max_bytes=1)
    for example, grid, alone in zip(examples, together, one_by_one):
        np.testing.assert_allclose(grid, label_attention(model, collator, example), atol=1e-5)
        np.testing.assert_allclose(alone, label_attention(model, collator, example), atol=1e-6)
    assert not np.allclose(together[0], together[1], atol=1e-3)


def test_sdpa_models_are_refused_with_a_reason():
    model = load_model("rbft-world-base", dtype="float32", attn_implementation="sdpa")
    clip = make_clip(1, 0, "x")[1][:4]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    with pytest.raises(ValueError, match="eager"):
        label_attention(model, collator, Example("a", "v", "Is this normal?", "<normal>"))


def test_focus_is_one_for_uniform_attention_and_above_one_on_the_box():
    cover = coverage([[32, 32, 64, 64], None], size=(128, 128), grid=(8, 8))[None]
    assert cover.sum() == 4 and cover.max() == 1  # a 32x32 box is 2x2 cells of 16 pixels
    uniform = np.full((1, 8, 8), 1 / 64)
    assert focus(uniform, cover) == pytest.approx(1.0)
    on_box = cover / cover.sum()
    assert focus(on_box, cover) == pytest.approx(16.0)  # all mass on 1/16 of the area
    assert focus(uniform, np.zeros_like(cover)) is None
    half = coverage([[0, 0, 8, 16]], size=(128, 128), grid=(8, 8))
    assert half[0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("k", [0, 77, 255])  # the first video token, one inside, the last (4 x 8 x 8 tokens)
def test_the_map_peaks_at_the_video_token_the_label_is_made_to_look_at(k):
    """Every later layer's attention from the label's tokens is forced onto the k-th video token: the map must put
    all its mass on that cell (a wrong row (not the label's tokens), column or grid order would not)."""
    model = load_model("rbft-world-base", dtype="float32", attn_implementation="eager")
    clip = make_clip(1, 0, "x")[1][:8]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    example = Example("a", "v", "Is this normal?", "<abnormal>")
    ids = collator([example])["input_ids"][0].tolist()
    label = collator.processor.tokenizer("<abnormal>", add_special_tokens=False)["input_ids"]
    start = max(i for i in range(len(ids)) if ids[i:i + len(label)] == label)
    rows = list(range(start, start + len(label)))
    column = [i for i, t in enumerate(ids) if t == model.config.video_token_id][k]
    layers = model.model.language_model.layers

    def force(module, args, output):
        weights = output[1]
        weights[:, :, rows, :] = 0
        weights[:, :, rows, column] = 1

    hooks = [layer.self_attn.register_forward_hook(force) for layer in layers[len(layers) // 2:]]
    try:
        grid = label_attention(model, collator, example)
    finally:
        for hook in hooks:
            hook.remove()
    assert grid.shape == (4, 8, 8)
    assert np.unravel_index(grid.argmax(), grid.shape) == np.unravel_index(k, grid.shape)
    assert grid.max() == pytest.approx(1.0)
