"""`rbft predict`: a classifier that rbft trained, on any video files.

A label stage (Stage II, direct SFT) writes `rbft_task.json` beside the classifier's weights:
the task (persona, question, labels) and the frame sampling it was trained with, so the
classifier is judged on new videos exactly as it was on the test split, by label scoring,
and its calibration (`rbft.calibration`: the prior shift chosen on the val split when it was
trained), so a video gets the decision the run's predictions file gives it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rbft.calibration import Calibration
from rbft.config import DataConfig, ExperimentConfig, TaskConfig
from rbft.data.cache import FrameCache
from rbft.data.manifest import VideoRecord
from rbft.errors import ConfigError, VideoError
from rbft.scoring import label_scores

TASK_FILE = "rbft_task.json"


def write_task(config: ExperimentConfig, model_dir: Path, calibration: Calibration | None = None) -> None:
    """What `rbft predict` needs beside the weights: the task (persona, question, labels), the frame sampling, the
    dtype the classifier was scored in (a bfloat16 model's test figures are bfloat16's), and its calibration."""
    meta = {"task": config.task.model_dump(), "data": config.data.model_dump(mode="json"),
            "model": {"dtype": config.model.dtype, "attn_implementation": config.model.attn_implementation}}
    if calibration is not None:
        meta["calibration"] = calibration.to_json()
    (model_dir / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_calibration(model_dir: str | Path, labels: list[str]) -> Calibration:
    """The calibration a classifier was trained with (none for one from before calibration, or without a val split)."""
    path = Path(model_dir) / TASK_FILE
    meta = json.loads(path.read_text()) if path.is_file() else {}
    return Calibration.from_json(meta.get("calibration"), len(labels))


def classify(model_dir: str | Path, videos: Sequence[Path], batch_size: int = 8) -> list[dict]:
    """Each video's label by a classifier that rbft trained (its folder holds the task).

    Returns one dict per video, in order: `video`, `predicted` (the calibrated decision), `raw_predicted`
    (the argmax of the scores) and `scores` (per-label log-probabilities), or `error` (the video error's
    kind) and `message`.
    """
    meta_path = Path(model_dir) / TASK_FILE
    if not meta_path.is_file():
        raise ConfigError(f"{model_dir}: no {TASK_FILE}; point --model at a classifier rbft trained "
                          "(runs/<name>/models/rbft/seed0 or models/direct_sft/seed0)")
    meta = json.loads(meta_path.read_text())
    task, sampling = TaskConfig(**meta["task"]), DataConfig(**meta["data"]).sampling()
    cache, out, clips = FrameCache(), [], {}
    for video in videos:
        try:
            clips[Path(video)] = cache.load(video, sampling)
            out.append({"video": str(video)})
        except VideoError as e:
            out.append({"video": str(video), "error": e.kind, "message": e.message})
    usable = [VideoRecord(r["video"], Path(r["video"]), None, "test") for r in out if "error" not in r]
    if usable:
        labels = list(task.labels)
        m = meta.get("model", {})  # (classifiers from before it was written: the checkpoint's own dtype)
        scores = label_scores(task, model_dir, usable, lambda path: clips[path], m.get("dtype", "auto"),
                              m.get("attn_implementation", "sdpa"), batch_size=batch_size)
        decide = Calibration.from_json(meta.get("calibration"), len(labels))
        by_video = dict(zip((v.id for v in usable), zip(scores, decide.decide(scores))))
        for r in out:
            if r["video"] in by_video:
                row, chosen = by_video[r["video"]]
                r.update(predicted=labels[int(chosen)], raw_predicted=labels[int(row.argmax())],
                         scores={x: float(s) for x, s in zip(labels, row)})
    return out
