"""The frozen tower's cache: what it returns is what the tower would, and it stands aside whenever it could not be."""

import numpy as np
import pytest
import torch

from rbft import towercache
from rbft.data.collate import Example, VideoChatCollator
from rbft.data.video import Clip, VideoInfo
from rbft.errors import ConfigError
from rbft.modeling import load_model
from rbft.scoring import label_logprobs
from rbft.towercache import TowerCache

from .families import build

TARGETS = ["<normal>", "<abnormal>"]


def clips(n: int, seed: int = 0) -> dict[str, Clip]:
    rng = np.random.default_rng(seed)
    info = VideoInfo(width=64, height=64, duration_s=2.0, rotation=0, codec="h264", container="mp4", frame_count=8)
    return {f"v{i}": Clip(rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8), np.array([0.25, 0.75, 1.25, 1.75]),
                          info) for i in range(n)}


def examples(videos) -> list[Example]:
    return [Example(v, v, "Is anything wrong here?", "", "You are a Smart Home Security Expert.") for v in videos]


def frozen(videos: int):
    """A tiny Qwen2-VL as `load_model` leaves one loaded for inference (eval mode, no weight wanting a gradient),
    its encoder wrapped, with a collator over `videos` random clips."""
    processor, model = build("qwen2_vl")
    model.eval().requires_grad_(False)
    towercache.attach(model)
    frames = clips(videos)
    return model, frames, VideoChatCollator(processor, frames.__getitem__)


@pytest.fixture
def cache(monkeypatch):
    fresh = TowerCache(2**30)
    monkeypatch.setattr(towercache, "CACHE", fresh)
    return fresh


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_cached_scores_equal_the_towers_own_and_each_video_is_encoded_once(family, cache):
    processor, model = build(family)
    model.eval().requires_grad_(False)  # as `load_model` leaves a model loaded for inference
    frames = clips(5)
    collator = VideoChatCollator(processor, frames.__getitem__)
    plain = label_logprobs(model, collator, examples(frames), TARGETS, batch_size=2)
    assert towercache.attach(model) and towercache.attach(model)  # (a second attach wraps nothing more)
    first = label_logprobs(model, collator, examples(["v0", "v1", "v2"]), TARGETS, batch_size=2)
    assert (cache.hits, cache.misses) == (0, 3) and len(cache.entries) == 3
    # v3 and v4 are new, each batch mixes them with videos already encoded
    again = label_logprobs(model, collator, examples(["v3", "v0", "v4", "v1", "v2"]), TARGETS, batch_size=2)
    assert (cache.hits, cache.misses) == (3, 5)
    np.testing.assert_allclose(first, plain[:3], atol=1e-5)
    np.testing.assert_allclose(again, plain[[3, 0, 4, 1, 2]], atol=1e-5)


def test_a_changed_tower_is_encoded_afresh_and_a_trained_one_is_not_cached(cache):
    model, frames, collator = frozen(2)
    before = label_logprobs(model, collator, examples(frames), TARGETS)
    with torch.no_grad():
        model.model.visual.blocks[0].mlp.fc1.weight.mul_(3.0)  # changed in place, as an optimizer step would
    after = label_logprobs(model, collator, examples(frames), TARGETS)
    assert cache.hits == 0 and cache.misses == 4  # the new weights' fingerprint matches no entry
    assert np.abs(after - before).max() > 1e-3
    _, twin = build("qwen2_vl")
    twin.load_state_dict(model.state_dict())
    twin.eval()
    np.testing.assert_allclose(after, label_logprobs(twin, collator, examples(frames), TARGETS), atol=1e-5)

    # a tower that is being trained: gradients must flow through it, so nothing is read from the cache or kept,
    # not even in the scoring between its epochs (an optimizer may change its weights where no version counts)
    cache.clear()
    model.requires_grad_(True)
    label_logprobs(model, collator, examples(frames), TARGETS)
    assert cache.hits == cache.misses == 0
    model.train()
    model(**collator([Example("v0", "v0", "Is anything wrong?", "<normal>")])).loss.backward()
    assert model.model.visual.blocks[0].mlp.fc1.weight.grad is not None
    assert cache.hits == cache.misses == 0


def test_dropout_in_the_tower_while_training_bypasses_the_cache(cache):
    processor, model = build("qwen2_vl")
    for param in model.model.visual.parameters():
        param.requires_grad = False
    towercache.attach(model)
    frames = clips(1)
    batch = VideoChatCollator(processor, frames.__getitem__)([Example("v0", "v0", "Is anything wrong?", "<normal>")])
    model.train()
    model(**batch)
    model(**batch)
    assert cache.hits == 1  # frozen and without dropout: the second step reads the first's encoding
    for module in model.model.visual.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.1
    model(**batch)
    assert cache.hits == 1 and cache.misses == 1


def test_families_it_does_not_know_are_left_alone_and_the_shipped_model_is_wrapped_on_load():
    for family in ("smolvlm", "llava_onevision"):
        _, model = build(family)
        assert not towercache.attach(model)
    model = load_model("rbft-world-base", dtype="float32")
    assert getattr(model.model.get_video_features, "_rbft_cached", False)
    assert all(p.requires_grad for p in model.parameters())  # loaded for training: the trainer decides
    assert not any(p.requires_grad for p in load_model("rbft-world-base", device="cpu").parameters())


def test_a_caller_asking_for_a_tuple_or_several_processes_bypass_it(cache, monkeypatch):
    model, _, collator = frozen(1)
    batch = collator.prompts(examples(["v0"]))
    pixels, grid = batch["pixel_values_videos"], batch["video_grid_thw"]
    model.model.get_video_features(pixels, grid, return_dict=True)
    assert cache.misses == 1
    assert isinstance(model.model.get_video_features(pixels, grid, return_dict=False), tuple)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    model.model.get_video_features(pixels, grid, return_dict=True)
    assert (cache.hits, cache.misses) == (0, 1)


def test_the_size_comes_from_the_environment_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setenv("RBFT_TOWER_CACHE_MB", "1.5")
    assert towercache.limit() == 1.5 * 2**20
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv("RBFT_TOWER_CACHE_MB", bad)
        with pytest.raises(ConfigError, match="RBFT_TOWER_CACHE_MB"):
            towercache.limit()


def test_an_encoding_under_autocast_is_not_served_without_it(cache):
    model, frames, collator = frozen(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        label_logprobs(model, collator, examples(frames), TARGETS)
    label_logprobs(model, collator, examples(frames), TARGETS)
    assert cache.hits == 0 and len(cache.entries) == 2


def test_the_least_recently_used_entries_go_beyond_the_byte_limit():
    cache = TowerCache(max_bytes=3 * 400)  # room for three entries of 100 float32
    for k in range(4):
        cache.put(("w", k), (None, torch.zeros(100), None))
    assert list(cache.entries) == [("w", 1), ("w", 2), ("w", 3)] and cache.bytes == 1200
    assert cache.get(("w", 1)) is not None  # used: now the most recent
    cache.put(("w", 4), (None, torch.zeros(100), None))
    assert list(cache.entries) == [("w", 3), ("w", 1), ("w", 4)]
    cache.put(("w", 5), (None, torch.zeros(1000), None))  # larger than the whole cache: not kept
    assert ("w", 5) not in cache.entries and cache.bytes == 1200
