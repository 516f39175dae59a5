"""Write the world to disk: video files, scene records, and one manifest per task.

`generate_world(out, seed)` is what `rbft world generate` runs. Clip `i` of a world
with seed `s` is drawn from `numpy.random.default_rng([s, i])` and encoded with
single-threaded x264 and bit-exact muxing, so the same seed gives byte-identical
videos, records and manifests on every run.
"""

from __future__ import annotations

import fractions
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import yaml

from rbft.world.render import FPS, render
from rbft.world.scenes import SceneRecord, sample_scenario
from rbft.world.tasks import TASKS, label

WORLD_VERSION = 2


@dataclass(frozen=True)
class Splits:
    train: int = 200
    val: int = 60
    test: int = 400

    def of(self, index: int) -> str:
        if index < self.train:
            return "train"
        return "val" if index < self.train + self.val else "test"

    @property
    def total(self) -> int:
        return self.train + self.val + self.test


def write_clip(path: Path, frames: np.ndarray, fps: float = FPS) -> None:
    """Encode RGB frames as H.264 in MP4, the same bytes for the same frames."""
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.options = {"crf": "16", "preset": "medium", "threads": "1"}
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def make_clip(seed: int, index: int, clip_id: str) -> tuple[SceneRecord, np.ndarray]:
    """The scene record and frames of clip `index` of the world with `seed`."""
    rng = np.random.default_rng([seed, index])
    record = sample_scenario(rng, clip_id)
    return record, render(record, rng)


def generate_clips(out: str | Path, seed: int, count: int, prefix: str = "clip", transform=None,
                   on_clip=None) -> list[SceneRecord]:
    """Write clips `0 .. count-1` as `out/videos/<prefix>_<index>.mp4`; return their scene records.

    `transform(index, record, frames)`, when given, returns the frames to write instead.
    """
    videos = Path(out) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        record, frames = make_clip(seed, index, f"{prefix}_{index:05d}")
        if transform is not None:
            frames = transform(index, record, frames)
        write_clip(videos / f"{record.id}.mp4", frames)
        records.append(record)
        if on_clip is not None:
            on_clip()
    return records


def generate_world(out: str | Path, seed: int = 0, splits: Splits = Splits(), on_clip=None) -> dict:
    """Write a labelled world: videos, `scenes.jsonl`, `<task>.jsonl` manifests, `<task>.yaml` tasks."""
    out = Path(out)
    records = generate_clips(out, seed, splits.total, on_clip=on_clip)
    with open(out / "scenes.jsonl", "w") as f:
        for record in records:
            f.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
    counts = {}
    for task, config in TASKS.items():
        counts[task] = {}
        with open(out / f"{task}.jsonl", "w") as f:
            for i, record in enumerate(records):
                name, subtype = label(task, record)
                split = splits.of(i)
                row = {"id": record.id, "video": f"videos/{record.id}.mp4", "label": name, "split": split,
                       "meta": {"subtype": subtype, "scene": record.scene, "time": record.time,
                                "subject": record.main.kind, "action": record.main.action}}
                f.write(json.dumps(row, sort_keys=True) + "\n")
                counts[task].setdefault(split, {}).setdefault(name, 0)
                counts[task][split][name] += 1
        (out / f"{task}.yaml").write_text(_task_yaml(config))
        (out / f"experiment-{task}.yaml").write_text(_experiment_yaml(task, config))
    info = {"version": WORLD_VERSION, "seed": seed, "splits": splits.__dict__, "labels": counts}
    (out / "world.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def _task_yaml(config) -> str:
    return yaml.safe_dump({"task": config.model_dump()}, sort_keys=False, width=120)


def experiment(task: str, config, manifest: str | None = None) -> dict:
    """An experiment over this world with the shipped base model, ready for `rbft run`."""
    return {"name": f"world-{task}", "task": config.model_dump(),
            "data": {"manifest": manifest or f"{task}.jsonl", "num_frames": 8, "max_pixels": 128 * 128},
            "model": {"name_or_path": "rbft-world-base", "dtype": "float32"},
            "rationales": {"source": "self", "label_hint": True, "max_new_tokens": 96, "batch_size": 16},
            # the label stages' settings as measured on this world (README, "Label training"): the
            # vision tower frozen, every label drawn equally often, a high rate and at least 60 steps
            "training": {"method": "full", "train_vision": False, "batch_size": 8, "gradient_accumulation": 1,
                         "balance": "sample", "stage1": {"epochs": 2, "learning_rate": 2e-4},
                         "stage2": {"epochs": 4, "learning_rate": 1e-3, "min_steps": 60}}}


def _experiment_yaml(task: str, config) -> str:
    return yaml.safe_dump(experiment(task, config), sort_keys=False, width=120)


def load_scenes(world: str | Path) -> dict[str, dict]:
    """The scene records of a generated world, by clip id."""
    with open(Path(world) / "scenes.jsonl") as f:
        return {row["id"]: row for row in map(json.loads, f)}
