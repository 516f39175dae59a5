"""Write the world to disk: video files, scene records, one manifest per task, and the ground truth the stages read.

`generate_world(out, seed)` is what `rbft world generate` runs. Besides each task's manifest
it writes what the world knows and a real dataset rarely does, in the files of
`rbft.data.annotations`: every clip's boxes of what matters (its subjects, the package, the
trash can), frame by frame, and each task's ground-truth rationales (the scene record in
rbft's rationale layout, ending in the label), so no stage has to know the world. Clip `i` of a world
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

from rbft.data.annotations import BOXES, scene_rationales_file
from rbft.data.jsonl import read_jsonl, write_jsonl
from rbft.prompts import CONCLUSION, label_target
from rbft.world.captions import structured
from rbft.world.render import FPS, SIZE, render
from rbft.world.scenes import SceneRecord, sample_scenario, scene_record
from rbft.world.tasks import TASKS, explain, label

WORLD_VERSION = 2
SALIENT_OBJECTS = ("package", "trash can")  # besides the subjects, what the tasks' verdicts rest on


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
    write_ground_truth(out)
    info = {"version": WORLD_VERSION, "seed": seed, "splits": splits.__dict__, "labels": counts}
    (out / "world.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def write_ground_truth(world: str | Path) -> None:
    """From the world's scene records: `boxes.jsonl` and each task's `<task>.scene-rationales.jsonl`."""
    world = Path(world)
    rows = load_scenes(world)
    write_jsonl(world / BOXES, [{"id": i, "fps": FPS, "size": [SIZE, SIZE], "frames": salient_boxes(row)}
                                for i, row in rows.items()])
    records = [scene_record(row) for row in rows.values()]
    for task in TASKS:
        write_jsonl(scene_rationales_file(world / f"{task}.jsonl", task),
                    [{"id": r.id, "rationale": scene_rationale(task, r), "model": "scene-record"} for r in records])


def has_ground_truth(world: str | Path) -> bool:
    """Whether the world holds the files `write_ground_truth` writes (worlds drawn by older rbft lack them)."""
    world = Path(world)
    return (world / BOXES).is_file() and all(scene_rationales_file(world / f"{t}.jsonl", t).is_file() for t in TASKS)


def salient_boxes(row: dict) -> list[list[list[int]]]:
    """Per frame, the boxes of a scene record's subjects and salient objects that are in view."""
    tracks = [s["boxes"] for s in row["subjects"]] + [row["objects"][o] for o in SALIENT_OBJECTS if o in row["objects"]]
    frames = max(map(len, tracks), default=0)
    return [[track[i] for track in tracks if i < len(track) and track[i] is not None] for i in range(frames)]


def scene_rationale(task: str, record: SceneRecord) -> str:
    """The ground truth of a clip, in the rationale layout, ending in its label for `task`."""
    return (f"{structured(record)}\nReasoning: {explain(task, record)}\n"
            f"{CONCLUSION} {label_target(label(task, record)[0])}")


def _task_yaml(config) -> str:
    return yaml.safe_dump({"task": config.model_dump()}, sort_keys=False, width=120)


def experiment(task: str, config, manifest: str | None = None) -> dict:
    """An experiment over this world with the shipped base model, ready for `rbft run`."""
    return {"name": f"world-{task}", "task": config.model_dump(),
            "data": {"manifest": manifest or f"{task}.jsonl", "num_frames": 8, "max_pixels": 128 * 128},
            "model": {"name_or_path": "rbft-world-base", "dtype": "float32"},
            "rationales": {"source": "self", "label_hint": True, "max_new_tokens": 160, "batch_size": 16},
            # the label stages' settings as measured on this world (docs/results.md): the vision tower
            # frozen, every label equally often in every batch, a high rate, at least 60 steps, the embeddings frozen
            "training": {"method": "full", "train_vision": False, "batch_size": 8, "gradient_accumulation": 1,
                         "balance": "batch", "stage1": {"epochs": 2, "learning_rate": 2e-4},
                         "stage2": {"epochs": 4, "learning_rate": 1e-3, "min_steps": 60, "freeze_embeddings": True}}}


def _experiment_yaml(task: str, config) -> str:
    return yaml.safe_dump(experiment(task, config), sort_keys=False, width=120)


def load_scenes(world: str | Path) -> dict[str, dict]:
    """The scene records of a generated world, by clip id."""
    return {row["id"]: row for row in read_jsonl(Path(world) / "scenes.jsonl")}
