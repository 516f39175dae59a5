"""A frozen vision tower's output, kept per video: each video is encoded once per process, not once per epoch,
per model and per eval.

With `training.train_vision: false` (the default) every model of a run (the base model, M_inter, M*, direct
SFT, every seed) has the base model's tower, byte for byte, and training never changes it; yet each training
step, each epoch's val scoring, each eval and each attention map would run it again over the same videos. On
the demo's model the tower is a third of a scoring forward and an eighth of a training step
(`benchmarks/frozen_tower.py` measures it).

`attach(model)` wraps the model's video encoder (`get_video_features`, the Qwen2-VL, Qwen2.5-VL and Qwen3-VL
families: one video's pixels are `t x h x w` consecutive rows, and what the encoder gives is split per video).
A video's entry is keyed by a SHA-1 of its pixel rows, its grid, the autocast it was encoded under, and a SHA-1
of the tower's weights (taken again whenever a weight changed in place), so two models share entries exactly
when their towers are equal. The cache is used only where the tower's output cannot differ from a fresh
forward's (beyond the rounding of matrix products over another batch of videos): a frozen tower (no weight
that wants a gradient: `load_model` freezes a model loaded for inference, `rbft.training.prepare` the tower
unless `train_vision`), no dropout active in it, nothing asked of it beyond `HARMLESS`, and a single process
(under DeepSpeed ZeRO-3 or FSDP a tower skipped on one process would stall the others' gathers). Entries live
in this process's memory (on the CPU), the least recently used dropped beyond
$RBFT_TOWER_CACHE_MB (default 4096; 0: off).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import torch

from rbft.errors import ConfigError

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
DEFAULT_MB = 4096
# what a forward may pass the encoder that leaves its output as cached (the tower's own attention weights are not
# kept: attention maps read the language model's); anything else (hidden states, precomputed positions) bypasses it
HARMLESS = {"return_dict", "output_attentions", "num_items_in_batch", "use_cache"}


class TowerCache:
    """Per-video encoder outputs (tuples of CPU tensors) by key, least recently used dropped beyond `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes, self.hits, self.misses = max_bytes, 0, 0, 0
        self.entries: OrderedDict[tuple, tuple] = OrderedDict()

    def get(self, key: tuple) -> tuple | None:
        found = self.entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: tuple, value: tuple) -> None:
        size = sum(t.numel() * t.element_size() for t in _tensors(value))
        if size > self.max_bytes or key in self.entries:
            return
        self.entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.bytes -= sum(t.numel() * t.element_size() for t in _tensors(dropped))

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = self.hits = self.misses = 0


CACHE = TowerCache(-1)  # its size is read from the environment when the first model is wrapped


def limit() -> int:
    """$RBFT_TOWER_CACHE_MB in bytes (default 4096 MB; 0: off)."""
    given = os.environ.get("RBFT_TOWER_CACHE_MB", str(DEFAULT_MB))
    try:
        megabytes = float(given)
    except ValueError:
        megabytes = -1
    if not megabytes >= 0:
        raise ConfigError(f"RBFT_TOWER_CACHE_MB={given!r}: give the frozen vision tower's cache size in megabytes "
                          f"(default {DEFAULT_MB}; 0 turns it off)")
    return int(megabytes * 2**20)


def attach(model) -> bool:
    """Make `model`'s video encoder read from and fill `CACHE` (a family it does not know is left as it is);
    returns whether it did."""
    if CACHE.max_bytes < 0:
        CACHE.max_bytes = limit()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner, config = getattr(base, "model", None), getattr(base, "config", None)
    if (getattr(config, "model_type", None) not in FAMILIES or CACHE.max_bytes <= 0
            or not hasattr(inner, "get_video_features") or not hasattr(inner, "visual")):
        return False
    if getattr(inner.get_video_features, "_rbft_cached", False):
        return True
    encode, tower, weights = inner.get_video_features, inner.visual, {}

    def get_video_features(pixel_values_videos, video_grid_thw=None, **kwargs):  # (as the model's forward calls it)
        if not _cacheable(tower, video_grid_thw, kwargs):
            return encode(pixel_values_videos, video_grid_thw, **kwargs)
        state = _state(tower)
        if weights.get("state") != state:  # first use, or the weights changed in place since (trained, loaded)
            weights.update(state=state, sha1=fingerprint(tower))
        grids = video_grid_thw.tolist()
        rows = torch.split(pixel_values_videos, [t * h * w for t, h, w in grids])
        precision = _precision(pixel_values_videos.device)
        keys = [(weights["sha1"], precision, tuple(grid), _digest(part)) for grid, part in zip(grids, rows)]
        found = [CACHE.get(key) for key in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            fresh = encode(torch.cat([rows[i] for i in missing]), video_grid_thw[missing], **kwargs)
            for j, i in enumerate(missing):
                found[i] = _per_video(fresh, j)
                CACHE.put(keys[i], found[i])
        return _joined(found, pixel_values_videos.device)

    get_video_features._rbft_cached = True
    inner.get_video_features = get_video_features
    return True


def fingerprint(module: torch.nn.Module) -> str:
    """A SHA-1 of `module`'s weights and buffers (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha1()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()


def _cacheable(tower: torch.nn.Module, grid, kwargs: dict) -> bool:
    """Whether the tower's output for these inputs is what a cached entry holds (see the module's docstring)."""
    if grid is None or kwargs.get("return_dict") is not True or set(kwargs) - HARMLESS:
        return False
    if torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1:  # sharded weights, collectives in the tower's forward
        return False
    if any(p.requires_grad or p.numel() == 0 for p in tower.parameters()):  # trained (or a ZeRO-3 shard)
        return False
    if tower.training:
        for m in tower.modules():
            if (isinstance(m, torch.nn.Dropout) and m.p > 0) or (getattr(m, "attention_dropout", 0) or 0) > 0:
                return False
    return True


def _precision(device: torch.device) -> str:
    """The autocast a forward on `device` runs under (the same tower gives bfloat16-rounded values in a bfloat16
    autocast training step and float32 ones in the val scoring between epochs)."""
    kind = device.type
    return str(torch.get_autocast_dtype(kind)) if torch.is_autocast_enabled(kind) else "none"


def _state(module: torch.nn.Module) -> tuple:
    """Where `module`'s weights are and how often each was changed in place (what a fingerprint holds for)."""
    return tuple((t.data_ptr(), t._version, t.dtype) for t in [*module.parameters(), *module.buffers()])


def _digest(rows: torch.Tensor) -> str:
    return hashlib.sha1(_bytes(rows)).hexdigest()


def _bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().contiguous().view(-1)
    if flat.dtype in (torch.bfloat16, torch.float16):
        flat = flat.view(torch.int16)
    return memoryview(flat.cpu().numpy()).cast("B")


def _per_video(output, j: int) -> tuple:
    """Video `j`'s share of the encoder's output: the output's class, its embeddings and (Qwen3-VL) its deepstack
    features."""
    deep = getattr(output, "deepstack_features", None)
    return (type(output), output.pooler_output[j].detach().cpu(),
            None if deep is None else tuple(layer[j].detach().cpu() for layer in deep))


def _joined(found: list[tuple], device):
    """The encoder's output for the whole batch, from each video's entry, as the model's forward reads it (its
    per-video embeddings and deepstack features; not the tower's last hidden state, which nothing reads)."""
    kind, _, deep = found[0]
    fields = {"pooler_output": tuple(f[1].to(device) for f in found)}
    if deep is not None:
        fields["deepstack_features"] = [tuple(f[2][k].to(device) for f in found) for k in range(len(deep))]
    output = kind(**fields)
    return output


def _tensors(value: tuple):
    yield value[1]
    yield from value[2] or ()
