"""Evaluation: every method on the same test videos by label scoring, and the comparison.

Label scoring: the log-probability of each label's full target (`<abnormal>`) as the reply
to the video and P_label; the prediction is the argmax, so nothing fails to parse. Each
video's scores go to `predictions/<method>[-seed<k>].jsonl`; `results.json` holds the
figures of DESIGN.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rbft.config import ExperimentConfig, TaskConfig
from rbft.data.collate import VideoChatCollator
from rbft.data.manifest import VideoRecord
from rbft.metrics import classification, compare, over_seeds
from rbft.modeling import load_model, load_processor
from rbft.prompts import label_target
from rbft.scoring import label_logprobs
from rbft.stages.stage2 import label_examples


def label_scores(task: TaskConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                 dtype: str = "auto", attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                 batch_size: int = 8) -> np.ndarray:
    """(len(videos), len(labels)) log-probability of each label's target, by the model at `model_dir`."""
    processor = load_processor(model_dir, trust_remote_code)
    model = load_model(model_dir, dtype, attn_implementation, trust_remote_code)
    return label_logprobs(model, VideoChatCollator(processor, frames), label_examples(task, videos),
                          [label_target(x) for x in task.labels], batch_size)


def predict(config: ExperimentConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
            out: Path, batch_size: int = 8) -> dict:
    """Score `videos` with the model at `model_dir`; write their predictions to `out`; return the figures."""
    m, labels = config.model, list(config.task.labels)
    scores = label_scores(config.task, model_dir, videos, frames, m.dtype, m.attn_implementation,
                          m.trust_remote_code, batch_size)
    predicted = [labels[i] for i in scores.argmax(1)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for v, p, row in zip(videos, predicted, scores):
            f.write(json.dumps({"id": v.id, "label": v.label, "predicted": p,
                                "scores": {x: float(s) for x, s in zip(labels, row)}}) + "\n")
    tmp.replace(out)
    return classification([v.label for v in videos], predicted, labels, scores if len(labels) == 2 else None)


def read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def results(config: ExperimentConfig, run: Path, methods: dict[str, list[Path]]) -> dict:
    """`results.json` from the prediction files: figures per method and seed, mean and std over
    seeds, and RB-FT minus direct SFT with its interval and paired test."""
    labels = list(config.task.labels)
    out: dict = {"labels": labels, "seeds": list(config.seeds), "methods": {}, "comparisons": {}}
    predictions = {name: [read_predictions(p) for p in paths] for name, paths in methods.items()}
    for name, runs in predictions.items():
        per_seed = [classification([r["label"] for r in rows], [r["predicted"] for r in rows], labels,
                                   _scores(rows, labels)) for rows in runs]
        head = dict(per_seed[0]) if len(per_seed) == 1 else {"n": per_seed[0]["n"], **_mean_figures(per_seed)}
        out["methods"][name] = {**head, "over_seeds": over_seeds(per_seed), "per_seed": per_seed}
    if "rbft" in predictions and "direct_sft" in predictions:
        truth = [r["label"] for r in predictions["rbft"][0]]
        out["comparisons"]["rbft_minus_direct_sft"] = compare(
            truth, [[r["predicted"] for r in rows] for rows in predictions["rbft"]],
            [[r["predicted"] for r in rows] for rows in predictions["direct_sft"]], labels)
    return out


def _scores(rows, labels):
    return np.array([[r["scores"][x] for x in labels] for r in rows]) if len(labels) == 2 else None


def _mean_figures(per_seed: list[dict]) -> dict:
    """The headline figures of several seeds: means (the confusion matrix summed)."""
    labels = list(per_seed[0]["per_class"])
    mean = lambda key: float(np.mean([r[key] for r in per_seed]))  # noqa: E731
    out = {"accuracy": mean("accuracy"), "macro_f1": mean("macro_f1"),
           "per_class": {x: {k: float(np.mean([r["per_class"][x][k] for r in per_seed]))
                             for k in ("precision", "recall", "f1")} | {"support": per_seed[0]["per_class"][x]["support"]}
                         for x in labels},
           "confusion_matrix": np.sum([r["confusion_matrix"] for r in per_seed], axis=0).tolist()}
    for key in ("roc_auc", "pr_auc"):
        if all(key in r for r in per_seed):
            out[key] = mean(key)
    return out


def classify(model_dir: str | Path, videos: Sequence[Path], batch_size: int = 8) -> list[dict]:
    """`rbft predict`: each video's label by a classifier that rbft trained (its folder holds the task).

    Returns one dict per video, in order: `video`, `predicted` and `scores` (per-label
    log-probabilities), or `error` (the video error's kind) and `message`.
    """
    from rbft.config import DataConfig
    from rbft.data.cache import FrameCache
    from rbft.errors import ConfigError, VideoError
    from rbft.stages.stage2 import TASK_FILE

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
        scores = label_scores(task, model_dir, usable, lambda path: clips[path], dtype="float32", batch_size=batch_size)
        by_video = dict(zip((v.id for v in usable), scores))
        for r in out:
            if r["video"] in by_video:
                row = by_video[r["video"]]
                r.update(predicted=labels[int(row.argmax())], scores={x: float(s) for x, s in zip(labels, row)})
    return out
