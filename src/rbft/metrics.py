"""The figures of the comparison, from scikit-learn and scipy: per method, over seeds, and paired.

`classification` gives one model's figures on one test set; `over_seeds` their mean and
standard deviation; `interval` a method's 95% bootstrap interval over test videos; `compare` RB-FT minus direct SFT on the same videos: a 95% bootstrap
interval (videos resampled with replacement, both methods together) for macro-F1, accuracy
and each class's F1, and McNemar's exact test on which videos each gets right.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str],
                   scores: np.ndarray | None = None) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support, the confusion matrix (rows = truth);
    for two labels with `scores` (n, 2) also ROC-AUC and PR-AUC of the second label."""
    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    out = {"n": len(truth), "accuracy": float(accuracy_score(truth, predicted)),
           "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
           "per_class": {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                 "support": int(s[i])} for i, label in enumerate(labels)},
           "confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist()}
    if len(labels) == 2 and scores is not None and len(set(truth)) == 2:
        positive = np.array([t == labels[1] for t in truth])
        margin = scores[:, 1] - scores[:, 0]
        out["roc_auc"] = float(roc_auc_score(positive, margin))
        out["pr_auc"] = float(average_precision_score(positive, margin))
    return out


def over_seeds(runs: Sequence[dict]) -> dict:
    """Mean and standard deviation (ddof 1; 0 for one seed) of each figure over seeds, per class too."""
    def stat(values):
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}

    out = {key: stat([r[key] for r in runs]) for key in ("accuracy", "macro_f1", "roc_auc", "pr_auc")
           if all(key in r for r in runs)}
    out["per_class_f1"] = {label: stat([r["per_class"][label]["f1"] for r in runs]) for label in runs[0]["per_class"]}
    return out


def interval(truth: Sequence[str], runs: Sequence[Sequence[str]], labels: Sequence[str], resamples: int = 2000,
             seed: int = 0) -> dict:
    """95% bootstrap intervals of one method's accuracy and macro-F1 (mean over seeds), test videos resampled
    with replacement (the same draw for every seed)."""
    truth, labels = np.asarray(truth), list(labels)
    runs = [np.asarray(x) for x in runs]

    def figures(idx) -> np.ndarray:
        return np.mean([[(x[idx] == truth[idx]).mean(),
                         f1_score(truth[idx], x[idx], labels=labels, average="macro", zero_division=0)] for x in runs], 0)

    rng = np.random.default_rng(seed)
    draws = np.array([figures(rng.integers(0, len(truth), len(truth))) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"accuracy": [float(low[0]), float(high[0])], "macro_f1": [float(low[1]), float(high[1])]}


def compare(truth: Sequence[str], a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], labels: Sequence[str],
            resamples: int = 2000, seed: int = 0) -> dict:
    """`a` minus `b` on the same videos, each given as one prediction list per seed (seeds paired).

    The difference is the mean over seeds of the per-seed difference in macro-F1, accuracy
    and each class's F1; its 95% interval comes from resampling the videos (the same draw
    for every seed and both methods). McNemar's exact test, per seed, counts the videos
    only one of the two gets right.
    """
    truth, labels = np.asarray(truth), list(labels)
    a, b = [np.asarray(x) for x in a], [np.asarray(x) for x in b]
    assert len(a) == len(b) and all(len(x) == len(truth) for x in a + b)

    def figures(idx) -> np.ndarray:
        rows = []
        for x, y in zip(a, b):
            t, x, y = truth[idx], x[idx], y[idx]
            fx = f1_score(t, x, labels=labels, average=None, zero_division=0)
            fy = f1_score(t, y, labels=labels, average=None, zero_division=0)
            rows.append(np.concatenate([[fx.mean() - fy.mean(), (x == t).mean() - (y == t).mean()], fx - fy]))
        return np.mean(rows, axis=0)

    observed = figures(np.arange(len(truth)))
    rng = np.random.default_rng(seed)
    draws = np.array([figures(rng.integers(0, len(truth), len(truth))) for _ in range(resamples)])
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    names = ["macro_f1", "accuracy"] + [f"f1:{label}" for label in labels]
    delta = {name: {"delta": float(observed[i]), "ci95": [float(low[i]), float(high[i])]} for i, name in enumerate(names)}
    tests = []
    for x, y in zip(a, b):
        only_a, only_b = int(((x == truth) & (y != truth)).sum()), int(((y == truth) & (x != truth)).sum())
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        tests.append({"only_first_right": only_a, "only_second_right": only_b, "p_value": float(p)})
    return {"delta": delta, "mcnemar": tests, "resamples": resamples, "seeds": len(a)}


def collapsed(results: dict) -> list[str]:
    """A warning for every method (and seed) that answered one label for every test video: it learnt nothing
    from the videos, whatever its accuracy."""
    out = []
    for name, m in results["methods"].items():
        counts = m.get("predicted_counts", [])
        seeds = results["seeds"] if name != "zero_shot" and len(counts) == len(results["seeds"]) else [None] * len(counts)
        for seed, count in zip(seeds, counts):
            answered = [x for x, n in count.items() if n]
            if len(answered) == 1:
                out.append(f"{name}{'' if seed is None else f' (seed {seed})'} answers <{answered[0]}> for every "
                           "test video: it has learnt nothing from the videos (README: \"Label training for small, "
                           "imbalanced sets\")")
    return out
