"""Attention stage: where direct SFT's and RB-FT's label token looks, drawn and, on the world, measured.

For the first `count` test videos, a figure per video: one row per method, one column per
temporal patch (its first frame), the label token's attention scaled 0-1 over the frame in
viridis (purple to yellow). On the built-in world, whose boxes are known, the focus figure
of each method averaged over up to `limit` test videos: the share of attention inside the
subjects', the package's and the trash can's boxes over the share of area they cover.
The label token is the one each model predicted (from its predictions file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rbft.attention import coverage, focus, label_attention, scaled
from rbft.config import ExperimentConfig
from rbft.data.collate import Example, VideoChatCollator
from rbft.data.manifest import VideoRecord
from rbft.modeling import load_model, load_processor
from rbft.prompts import label_prompt, label_target, system_prompt

SALIENT_OBJECTS = ("package", "trash can")


def attention_stage(config: ExperimentConfig, test: Sequence[VideoRecord], frames: Callable,
                    models: dict[str, tuple[Path, Path]], out: Path, count: int = 4, limit: int = 100) -> dict:
    """`models`: method -> (model folder, predictions file). Writes `out/<video id>.png`; returns focus figures."""
    scenes = _scenes(config)
    chosen = list(test[:max(count, limit if scenes else 0)])
    grids: dict[str, dict[str, np.ndarray]] = {}
    for method, (model_dir, predictions) in models.items():
        # a free reply that named no label (eval.mode: generate) is drawn at the true label's token
        predicted = {r["id"]: r["predicted"] or r["label"] for r in map(json.loads, predictions.read_text().splitlines())}
        m = config.model
        model = load_model(model_dir, m.dtype, "eager", m.trust_remote_code)
        collator = VideoChatCollator(load_processor(model_dir, m.trust_remote_code), frames)
        grids[method] = {v.id: label_attention(model, collator, Example(
            v.id, v.video, label_prompt(config.task), label_target(predicted[v.id]), system_prompt(config.task)))
            for v in chosen}
    out.mkdir(parents=True, exist_ok=True)
    for v in chosen[:count]:
        _figure(frames(v.video), {method: g[v.id] for method, g in grids.items()}, out / f"{v.id}.png")
    facts: dict = {"videos": [v.id for v in chosen[:count]], "layers": "later half"}
    if scenes:
        facts["focus"] = {method: _mean_focus(g, chosen, frames, scenes) for method, g in grids.items()}
        facts["focus_videos"] = len(chosen)
    return facts


def _scenes(config: ExperimentConfig) -> dict[str, dict] | None:
    """The world's scene records (with boxes) when the manifest is a world's, else None."""
    from rbft.world.generate import load_scenes

    world = config.data.manifest.parent
    return load_scenes(world) if (world / "scenes.jsonl").is_file() else None


def _mean_focus(grids: dict[str, np.ndarray], videos, frames: Callable, scenes: dict) -> float | None:
    from rbft.world.render import FPS

    values = []
    for v in videos:
        clip, row = frames(v.video), scenes[v.id]
        grid = grids[v.id]
        index = [int(round(t * FPS)) for t in clip.timestamps]
        per_patch = len(index) // grid.shape[0]
        cover = []
        for k in range(grid.shape[0]):
            boxes = [seq[i] for i in index[k * per_patch:(k + 1) * per_patch] for seq in _salient(row)
                     if i < len(seq)]
            cover.append(coverage(boxes, (clip.frames.shape[2], clip.frames.shape[1]), grid.shape[1:]))
        value = focus(grid, np.stack(cover))
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else None


def _salient(row: dict) -> list[list]:
    return [s["boxes"] for s in row["subjects"]] + [row["objects"][o] for o in SALIENT_OBJECTS if o in row["objects"]]


def _figure(clip, grids: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = clip.frames
    steps = next(iter(grids.values())).shape[0]
    per_patch = len(frames) // steps
    fig, axes = plt.subplots(len(grids), steps, figsize=(1.8 * steps, 1.9 * len(grids)), squeeze=False)
    for row, (method, grid) in enumerate(grids.items()):
        shown = scaled(grid)
        for k in range(steps):
            ax = axes[row][k]
            frame = frames[k * per_patch]
            ax.imshow(frame)
            ax.imshow(shown[k], cmap="viridis", alpha=0.55, extent=(0, frame.shape[1], frame.shape[0], 0),
                      interpolation="nearest", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(method, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
