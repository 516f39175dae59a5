"""Calibrated decisions: a method's label scores plus tau x log(the train split's label shares).

Label stages draw every label equally often (`training.balance: sample` or `batch`), so a classifier
learns as if the labels were equally common, and answers the rare ones far more often
than they occur; a zero-shot model has its own skew. One parameter moves every method
along its accuracy / macro-F1 curve: tau = 0 is the raw argmax (the balanced decision a
label stage was trained for), tau = 1 adds the train prior back in full (the decision that
maximises expected accuracy, if the scores were calibrated for balanced labels); between
them the trade of accuracy for rare-label recall. Tau is chosen in [0, 1] on the val split
(the best val macro-F1; the middle of the best taus when several tie), one parameter
because the rare labels have few val videos: a wider range lets a few val videos pull the
decisions to an extreme (measured on the demo: val chose tau -1 and cost test macro-F1 0.08).
A val split with fewer than `eval.calibration_min_val` (3) videos of some label cannot choose it
(a label with one val video has an F1 of 0 or 1): tau is then 0, the raw decisions, and the
calibration says why (`why`). Only the prior term changes a decision:
`decide` adds the same vector to every video's scores.

A trained classifier keeps its calibration in its folder (`rbft_task.json`), so `rbft predict`
and `rbft serve` decide as the run's predictions did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import f1_score

TAUS = tuple(float(t) for t in np.round(np.arange(0.0, 1.0001, 0.1), 1))


@dataclass(frozen=True)
class Calibration:
    """tau and the log train shares it multiplies (per label, in the task's order); tau 0 is the raw decision."""

    tau: float
    log_prior: tuple[float, ...]
    val_macro_f1_raw: float | None = None  # the val figures behind the choice
    val_macro_f1: float | None = None
    why: str | None = None  # why tau is 0 without a choice (too few val videos)

    def shift(self) -> np.ndarray:
        return self.tau * np.asarray(self.log_prior)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Each row's label index after the shift (rows: videos, columns: the task's labels)."""
        return (np.asarray(scores) + self.shift()).argmax(-1)

    def to_json(self) -> dict:
        return asdict(self) | {"log_prior": list(self.log_prior)}

    @classmethod
    def from_json(cls, data: dict | None, labels: int) -> "Calibration":
        if not data:
            return none(labels)
        return cls(float(data["tau"]), tuple(float(x) for x in data["log_prior"]), data.get("val_macro_f1_raw"),
                   data.get("val_macro_f1"), data.get("why"))


def none(labels: int) -> Calibration:
    """The raw argmax."""
    return Calibration(0.0, (0.0,) * labels)


def log_prior(train_labels: Sequence[str], labels: Sequence[str]) -> tuple[float, ...]:
    """Log of each label's share of the train split, add-one smoothed (a label absent from it is not impossible)."""
    counts = np.array([sum(y == x for y in train_labels) for x in labels], dtype=float)
    return tuple(float(v) for v in np.log((counts + 1) / (counts.sum() + len(labels))))


def unusable(val_labels: Sequence[str], labels: Sequence[str], min_val: int, what: str = "choose tau on",
             key: str = "eval.calibration_min_val") -> str | None:
    """Why a val split with these labels cannot `what` (None: it can): it has fewer than `min_val` (the config's
    `key`) videos of some label."""
    if not len(val_labels):
        return f"no val split to {what}"
    few = [f"{x} {sum(y == x for y in val_labels)}" for x in labels if sum(y == x for y in val_labels) < min_val]
    return f"too few val videos to {what}: {', '.join(few)} ({key}: {min_val} of each label)" if few else None


def choose(val_scores: np.ndarray, val_labels: Sequence[str], labels: Sequence[str],
           prior: Sequence[float], min_val: int = 3) -> Calibration:
    """The tau of `TAUS` with the best val macro-F1 (the middle one of a tie) for scores `val_scores`; tau 0 (with
    the reason) when the val split has fewer than `min_val` videos of some label."""
    labels = list(labels)
    why = unusable(val_labels, labels, min_val)
    if why:
        return Calibration(0.0, tuple(float(x) for x in prior), why=why)
    truth = np.array([labels.index(y) for y in val_labels])
    scores, prior = np.asarray(val_scores, dtype=float), np.asarray(prior, dtype=float)
    figures = [float(f1_score(truth, (scores + tau * prior).argmax(-1), labels=range(len(labels)), average="macro",
                              zero_division=0)) for tau in TAUS]
    best = [tau for tau, f in zip(TAUS, figures) if f >= max(figures) - 1e-12]
    return Calibration(best[(len(best) - 1) // 2], tuple(float(x) for x in prior), figures[TAUS.index(0.0)],
                       max(figures))
