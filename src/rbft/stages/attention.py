"""Attention stage: where direct SFT's and RB-FT's label token looks, drawn and, where boxes are known, measured.

For the first `count` test videos, a figure per video: one row per method, one column per
temporal patch (its first frame), the label token's attention scaled 0-1 over the frame in
viridis (purple to yellow). When the dataset has boxes of what matters beside its manifest
(`rbft.data.annotations`; the built-in world writes its subjects', packages' and trash
cans'), the focus figure of each method averaged over up to `limit` test videos: the share
of attention inside the boxes over the share of area they cover.
The label token is the one each model predicted (from its predictions file).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rbft.attention import coverage, focus, label_attentions, scaled
from rbft.config import ExperimentConfig
from rbft.data.annotations import BOXES, boxes_at, read_boxes
from rbft.data.jsonl import read_jsonl
from rbft.data.manifest import VideoRecord
from rbft.errors import ConfigError
from rbft.modeling import eager_language, load_for_videos
from rbft.prompts import label_examples
from rbft.runs import Run, attention_key


def attention(run: Run, test: Sequence[VideoRecord], frames: Callable, rbft: bool = True) -> dict:
    """The stage: the first seed's direct SFT and RB-FT (unless `rbft` is off: it was not trained), drawn in
    `attention/`; their focus into results.json."""
    seed = run.config.seeds[0]
    methods = ("direct_sft", "rbft") if rbft else ("direct_sft",)
    models = {m: (run.model_dir(m, seed), run.out / "predictions" / f"{m}-seed{seed}.jsonl") for m in methods}
    if not all(p.exists() for pair in models.values() for p in pair):
        raise ConfigError("attention needs the trained models and their predictions: run `rbft run CONFIG` first")

    def work() -> dict:
        return draw(run.config, test, frames, models, run.out / "attention", log=run.log)

    drawn = [v.id for v in test] + ([] if rbft else ["(direct SFT only)"])
    facts = run.stage("attention", attention_key(run.config, drawn), work, ("attention",),
                      borrow=False, doing="attention: drawing the label token's attention")
    run.add_results("attention", facts)
    return facts or {}


def draw(config: ExperimentConfig, test: Sequence[VideoRecord], frames: Callable,
         models: dict[str, tuple[Path, Path]], out: Path, count: int = 4, limit: int = 100,
         log: Callable[[str], None] = print) -> dict:
    """`models`: method -> (model folder, predictions file). Writes `out/<video id>.png`; returns focus figures."""
    boxes = read_boxes(config.data.manifest)
    if boxes is None:
        log(f"attention: no {BOXES} beside the manifest, so no focus figure (a world drawn by an older rbft "
            "gets one from `rbft world generate`; the same seed draws the same clips)")
    chosen = list(test[:max(count, limit if boxes else 0)])
    grids: dict[str, dict[str, np.ndarray]] = {}
    for method, (model_dir, predictions) in models.items():
        # a free reply that named no label (eval.mode: generate) is drawn at the true label's token
        predicted = {r["id"]: r["predicted"] or r["label"] for r in read_jsonl(predictions)}
        m = config.model
        model, collator = load_for_videos(model_dir, frames, m.dtype, eager_language(m.attn_implementation),
                                          m.trust_remote_code)
        shown = [replace(v, label=predicted[v.id]) for v in chosen]
        examples = label_examples(config.task, shown)
        grids[method] = dict(zip([e.id for e in examples], label_attentions(model, collator, examples,
                                                                             batch_size=config.eval.batch_size)))
    out.mkdir(parents=True, exist_ok=True)
    for v in chosen[:count]:
        _figure(frames(v.video), {method: g[v.id] for method, g in grids.items()}, out / f"{v.id}.png")
    facts: dict = {"videos": [v.id for v in chosen[:count]], "layers": "later half"}
    if boxes:
        facts["focus"] = {method: _mean_focus(g, chosen, frames, boxes) for method, g in grids.items()}
        facts["focus_videos"] = len(chosen)
    return facts


def _mean_focus(grids: dict[str, np.ndarray], videos, frames: Callable, boxes: dict[str, dict]) -> float | None:
    """A method's focus averaged over the `videos` with boxes."""
    values = []
    for v in videos:
        if v.id not in boxes:
            continue
        clip, grid = frames(v.video), grids[v.id]
        shown = boxes_at(boxes[v.id], clip.timestamps, (clip.frames.shape[2], clip.frames.shape[1]))
        per_patch = len(shown) // grid.shape[0]
        cover = [coverage([b for frame in shown[k * per_patch:(k + 1) * per_patch] for b in frame],
                          (clip.frames.shape[2], clip.frames.shape[1]), grid.shape[1:]) for k in range(grid.shape[0])]
        value = focus(grid, np.stack(cover))
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else None


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
