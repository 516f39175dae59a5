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

from rbft.config import ExperimentConfig
from rbft.data.collate import VideoChatCollator
from rbft.data.manifest import VideoRecord
from rbft.metrics import classification, compare, over_seeds
from rbft.modeling import load_model, load_processor
from rbft.prompts import label_target
from rbft.scoring import label_logprobs
from rbft.stages.stage2 import label_examples


def predict(config: ExperimentConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
            out: Path, batch_size: int = 8) -> dict:
    """Score `videos` with the model at `model_dir`; write their predictions to `out`; return the figures."""
    m, labels = config.model, list(config.task.labels)
    processor = load_processor(model_dir, m.trust_remote_code)
    model = load_model(model_dir, m.dtype, m.attn_implementation, m.trust_remote_code)
    scores = label_logprobs(model, VideoChatCollator(processor, frames), label_examples(config, videos),
                            [label_target(x) for x in labels], batch_size)
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
    import numpy as np

    return np.array([[r["scores"][x] for x in labels] for r in rows]) if len(labels) == 2 else None


def _mean_figures(per_seed: list[dict]) -> dict:
    """The headline figures of several seeds: means (the confusion matrix summed)."""
    import numpy as np

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
