"""What a dataset may know beyond its labels, in files beside its manifest.

- `boxes.jsonl`: where the things that matter are, frame by frame; the attention stage
  measures how much of the label token's attention falls on them. One line a video:
  `{"id": ..., "fps": 4.0, "size": [W, H], "frames": [[[x0, y0, x1, y1], ...], ...]}`: the
  boxes of frame k (shown at k / fps seconds) in pixels of a W x H picture.
- `<task>.scene-rationales.jsonl`: a ground-truth rationale for each video, as
  `rationales.source: scene` reads it: `{"id": ..., "rationale": ..., "model": ...}`.

The built-in world writes both when it is drawn (`rbft world generate`); the stages read
them from here and know nothing of the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rbft.data.jsonl import read_jsonl

BOXES = "boxes.jsonl"


def scene_rationales_file(manifest: Path, task: str) -> Path:
    """Where the ground-truth rationales of `task`'s videos lie, beside the manifest."""
    return manifest.parent / f"{task}.scene-rationales.jsonl"


def read_boxes(manifest: Path) -> dict[str, dict] | None:
    """The boxes beside `manifest`, by video id; None when the dataset has none."""
    path = manifest.parent / BOXES
    return {row["id"]: row for row in read_jsonl(path)} if path.is_file() else None


def boxes_at(row: dict, timestamps: Sequence[float], size: tuple[int, int]) -> list[list[list[int]]]:
    """The boxes shown at each of `timestamps` (seconds), in pixels of a `size` (W, H) picture."""
    sx, sy = size[0] / row["size"][0], size[1] / row["size"][1]
    frames = row["frames"]
    out = []
    for t in timestamps:
        k = int(round(t * row["fps"]))
        boxes = frames[k] if k < len(frames) else []
        out.append([[round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)] for x0, y0, x1, y1 in boxes])
    return out
