"""Evaluation: every method on the same test videos, and the comparison.

Label scoring (the default): the log-probability of each label's full target (`<abnormal>`)
as the reply to the video and P_label; the prediction is the argmax, so nothing fails to
parse. Free generation (`eval.mode: generate`): the model's greedy reply, read by
`prompts.parse_label`; a reply naming no label counts as wrong and the parse-failure rate
is reported. Each video's scores or reply go to `predictions/<method>[-seed<k>].jsonl`;
`results.json` holds the figures of DESIGN.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rbft.config import ExperimentConfig, TaskConfig
from rbft.data.collate import VideoChatCollator
from rbft.data.manifest import VideoRecord, write_jsonl
from rbft.metrics import classification, compare, interval, over_seeds
from rbft.modeling import load_model, load_processor
from rbft.generation import generate
from rbft.prompts import label_target, parse_label
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


def label_replies(task: TaskConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                  dtype: str = "auto", trust_remote_code: bool = False, max_new_tokens: int = 32,
                  batch_size: int = 8) -> list[tuple[str, str | None]]:
    """Each video's free reply to P_label (greedy) and the label parsed from it (None: a parse failure)."""
    processor = load_processor(model_dir, trust_remote_code)
    model = load_model(model_dir, dtype, "sdpa", trust_remote_code)
    replies = generate(model, VideoChatCollator(processor, frames), label_examples(task, videos),
                       max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [(reply, parse_label(reply, list(task.labels))) for reply in replies]


def predict(config: ExperimentConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
            out: Path) -> dict:
    """Judge `videos` with the model at `model_dir` as `config.eval` says; write their predictions to `out`
    (label scoring: each label's score; generation: the reply, and `predicted` null when it did not parse)."""
    m, e, labels = config.model, config.eval, list(config.task.labels)
    if e.mode == "score":
        scores = label_scores(config.task, model_dir, videos, frames, m.dtype, m.attn_implementation,
                              m.trust_remote_code, e.batch_size)
        rows = [{"id": v.id, "label": v.label, "predicted": labels[int(row.argmax())],
                 "scores": {x: float(s) for x, s in zip(labels, row)}} for v, row in zip(videos, scores)]
    else:
        replies = label_replies(config.task, model_dir, videos, frames, m.dtype, m.trust_remote_code,
                                e.max_new_tokens, e.batch_size)
        rows = [{"id": v.id, "label": v.label, "predicted": parsed, "reply": reply}
                for v, (reply, parsed) in zip(videos, replies)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    return _figures(rows, labels)


def _figures(rows: list[dict], labels: list[str]) -> dict:
    """One prediction file's figures; a reply that did not parse counts as wrong, and its rate is reported."""
    figures = classification([r["label"] for r in rows], _predicted(rows), labels, _scores(rows, labels))
    if any("reply" in r for r in rows):
        figures["parse_failure_rate"] = sum(r["predicted"] is None for r in rows) / len(rows)
    return figures


def read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def results(config: ExperimentConfig, run: Path, methods: dict[str, list[Path]]) -> dict:
    """`results.json` from the prediction files: figures per method and seed, mean and std over
    seeds, and RB-FT minus direct SFT with its interval and paired test."""
    labels = list(config.task.labels)
    out: dict = {"labels": labels, "seeds": list(config.seeds), "methods": {}, "comparisons": {}}
    predictions = {name: [read_predictions(p) for p in paths] for name, paths in methods.items()}
    for name, runs in predictions.items():
        per_seed = [_figures(rows, labels) for rows in runs]
        head = dict(per_seed[0]) if len(per_seed) == 1 else {"n": per_seed[0]["n"], **_mean_figures(per_seed)}
        ci95 = interval([r["label"] for r in runs[0]], [_predicted(rows) for rows in runs], labels)
        counts = [{x: _predicted(rows).count(x) for x in labels} for rows in runs]  # a collapse shows here
        out["methods"][name] = {**head, "ci95": ci95, "over_seeds": over_seeds(per_seed), "per_seed": per_seed,
                                "predicted_counts": counts}
    if "rbft" in predictions and "direct_sft" in predictions:
        truth = [r["label"] for r in predictions["rbft"][0]]
        out["comparisons"]["rbft_minus_direct_sft"] = compare(
            truth, [_predicted(rows) for rows in predictions["rbft"]],
            [_predicted(rows) for rows in predictions["direct_sft"]], labels)
    return out


def _predicted(rows: list[dict]) -> list[str]:
    """Each row's predicted label; a free reply that named none is "" (wrong for every metric)."""
    return [r["predicted"] or "" for r in rows]


def _scores(rows, labels):
    return np.array([[r["scores"][x] for x in labels] for r in rows]) if len(labels) == 2 and "scores" in rows[0] else None


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


def budget_curve(main: dict, points: Sequence[dict]) -> dict:
    """The label-budget curve: per number of labelled training videos, each fine-tuned method's macro-F1
    (mean and std over seeds, 95% interval over test videos) and RB-FT minus direct SFT with its interval;
    the main run (the whole train split) is the last point. Zero-shot and a model that answers the
    majority label for every video are the references (neither depends on the budget)."""
    rows = []
    for point in [*points, main]:
        methods = {name: {"macro_f1": m["over_seeds"]["macro_f1"]["mean"], "std": m["over_seeds"]["macro_f1"]["std"],
                          "ci95": m["ci95"]["macro_f1"], "seeds": len(m["per_seed"])}
                   for name, m in point["methods"].items() if name in ("direct_sft", "rbft")}
        delta = point["comparisons"].get("rbft_minus_direct_sft", {}).get("delta", {}).get("macro_f1")
        rows.append({"videos": point["train_videos"], "methods": methods, "rbft_minus_direct_sft": delta})
    support = [c["support"] for c in next(iter(main["methods"].values()))["per_class"].values()]
    share = max(support) / sum(support)
    zero_shot = main["methods"].get("zero_shot", {}).get("macro_f1")
    return {"points": sorted(rows, key=lambda r: r["videos"]), "zero_shot_macro_f1": zero_shot,
            "majority_macro_f1": 2 * share / (1 + share) / len(support)}
