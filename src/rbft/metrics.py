"""The figures of the comparison, from scikit-learn and scipy: per method, over seeds, and paired.

`classification` gives one model's figures on one test set; `over_seeds` their mean and
standard deviation; `interval` a method's 95% bootstrap interval over test videos; `compare` RB-FT minus direct SFT on the same videos: a 95% bootstrap
interval (videos resampled with replacement, both methods together) for macro-F1, accuracy
and each class's F1, and McNemar's exact test on which videos each gets right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    labels = list(labels)
    truth, runs = _codes(truth, runs, labels)

    def figures(idx: np.ndarray) -> np.ndarray:  # (draws, videos) -> (draws, [accuracy, macro-F1])
        t = truth[idx]
        return np.mean([np.stack([(xi == t).mean(axis=1), _f1(t, xi, len(labels)).mean(axis=1)], axis=1)
                        for xi in (x[idx] for x in runs)], axis=0)

    low, high = np.percentile(_bootstrap(figures, len(truth), resamples, seed), [2.5, 97.5], axis=0)
    return {"accuracy": [float(low[0]), float(high[0])], "macro_f1": [float(low[1]), float(high[1])]}


def compare(truth: Sequence[str], a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], labels: Sequence[str],
            resamples: int = 2000, seed: int = 0) -> dict:
    """`a` minus `b` on the same videos, each given as one prediction list per seed (seeds paired).

    The difference is the mean over seeds of the per-seed difference in macro-F1, accuracy
    and each class's F1; its 95% interval comes from resampling the videos (the same draw
    for every seed and both methods). McNemar's exact test, per seed, counts the videos
    only one of the two gets right.
    """
    labels = list(labels)
    assert len(a) == len(b) and all(len(x) == len(truth) for x in [*a, *b])
    truth, runs = _codes(truth, [*a, *b], labels)
    a, b = runs[:len(a)], runs[len(a):]

    def figures(idx: np.ndarray) -> np.ndarray:  # (draws, videos) -> (draws, figures)
        t = truth[idx]
        rows = []
        for x, y in zip(a, b):
            xi, yi = x[idx], y[idx]
            fx, fy = _f1(t, xi, len(labels)), _f1(t, yi, len(labels))
            rows.append(np.concatenate([(fx.mean(axis=1) - fy.mean(axis=1))[:, None],
                                        ((xi == t).mean(axis=1) - (yi == t).mean(axis=1))[:, None], fx - fy], axis=1))
        return np.mean(rows, axis=0)

    observed = figures(np.arange(len(truth))[None])[0]
    low, high = np.percentile(_bootstrap(figures, len(truth), resamples, seed), [2.5, 97.5], axis=0)
    names = ["macro_f1", "accuracy"] + [f"f1:{label}" for label in labels]
    delta = {name: {"delta": float(observed[i]), "ci95": [float(low[i]), float(high[i])]} for i, name in enumerate(names)}
    tests = []
    for x, y in zip(a, b):
        only_a, only_b = int(((x == truth) & (y != truth)).sum()), int(((y == truth) & (x != truth)).sum())
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        tests.append({"only_first_right": only_a, "only_second_right": only_b, "p_value": float(p)})
    return {"delta": delta, "mcnemar": tests, "resamples": resamples, "seeds": len(a)}


# The bootstrap, every resample at once: labels as small integers, per-class F1 as scikit-learn
# computes it (2·tp / (true + predicted), 0 where both are 0), so the figures are scikit-learn's
# to the last bit (tests/test_metrics.py holds them to it) at a hundredth of the time.

def _codes(truth: Sequence[str], runs: Sequence[Sequence[str]], labels: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Truth and each run as integer codes: the labels 0..k-1 in order, any other answer (a reply that named
    no label) a code of its own, so equality between answers is kept."""
    codes = {label: i for i, label in enumerate(labels)}
    encode = lambda xs: np.array([codes.setdefault(x, len(codes)) for x in xs], dtype=np.int64)  # noqa: E731
    return encode(truth), [encode(x) for x in runs]


def _bootstrap(figures: Callable[[np.ndarray], np.ndarray], n: int, resamples: int, seed: int) -> np.ndarray:
    """`figures` of `resamples` draws of n videos with replacement, (resamples, figures): the same draws for a
    given seed, taken in blocks of about a million indices so a large test set does not fill the memory."""
    rng = np.random.default_rng(seed)
    block = max(1, 1_000_000 // max(n, 1))
    out = [figures(np.stack([rng.integers(0, n, n) for _ in range(min(block, resamples - start))]))
           for start in range(0, resamples, block)]
    return np.concatenate(out)


def _f1(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """(draws, videos) codes -> (draws, k) F1 of each label, zero where the label is neither true nor predicted."""
    f1 = np.empty((truth.shape[0], k))
    for c in range(k):
        is_true, is_predicted = truth == c, predicted == c
        tp = (is_true & is_predicted).sum(axis=1).astype(float)
        denom = is_true.sum(axis=1).astype(float) + is_predicted.sum(axis=1).astype(float)
        f1[:, c] = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1


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
