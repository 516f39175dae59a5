"""Linear probes: how much of the task a model's features hold, read by logistic regression (scikit-learn).

Two uses. The `probe` baseline: a linear classifier on the frozen base model's features, the
floor a fine-tuned classifier has to clear (fine-tuning that loses to it has not used what the
model already represents). And per-stage probes: the same reading of the base model, M_inter,
M* and direct SFT, which says whether Stage I moved what the model represents, and by how much.

Features come from the label-scoring forward (`rbft.scoring.label_logprobs`): `label`, the
last layer's state where the label is predicted, and `vision`, the video's tokens as the
language model receives them, max-pooled. The probe standardises them and fits a
class-balanced logistic regression on the train split; which features (`label`, `vision` or
`both`) and the regularisation C are chosen by val macro-F1 (the first best of `KINDS` x `CS`,
the strongest regularisation first); without a val split, `label` and C = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

KINDS = ("label", "vision", "both")
CS = (0.01, 0.1, 1.0, 10.0)


def matrix(features: dict[str, np.ndarray], kind: str) -> np.ndarray:
    """The features of `kind` (`both`: label and vision side by side)."""
    if kind == "both":
        return np.concatenate([features["label"], features["vision"]], axis=1)
    return features[kind]


@dataclass
class Probe:
    kind: str
    C: float
    val_macro_f1: float | None
    model: Pipeline
    labels: tuple[str, ...]

    def log_proba(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """(videos, labels) log-probabilities in the task's label order (a label absent from training: -1e9)."""
        raw = self.model.predict_log_proba(matrix(features, self.kind))
        out = np.full((len(raw), len(self.labels)), -1e9)
        for j, label in enumerate(self.model.classes_):
            out[:, self.labels.index(label)] = raw[:, j]
        return out

    def describe(self) -> dict:
        return {"features": self.kind, "C": self.C, "val_macro_f1": self.val_macro_f1}


def _fit(x: np.ndarray, y: Sequence[str], C: float) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, class_weight="balanced"))
    return model.fit(x, list(y))


def fit(train: dict[str, np.ndarray], train_labels: Sequence[str], val: dict[str, np.ndarray] | None,
        val_labels: Sequence[str], labels: Sequence[str], kinds: Sequence[str] = KINDS) -> Probe:
    """The probe chosen on val (features and C) and fitted on the train split."""
    labels = tuple(labels)
    kinds = [k for k in kinds if all(part in train for part in (("label", "vision") if k == "both" else (k,)))]
    if not kinds:
        raise ValueError(f"no features to probe (have {sorted(train)})")
    if val is None or not len(val_labels):
        kind = "label" if "label" in kinds else kinds[0]
        return Probe(kind, 1.0, None, _fit(matrix(train, kind), train_labels, 1.0), labels)
    best = None
    for kind in kinds:
        for C in CS:
            model = _fit(matrix(train, kind), train_labels, C)
            score = float(f1_score(list(val_labels), model.predict(matrix(val, kind)), labels=list(labels),
                                   average="macro", zero_division=0))
            if best is None or score > best.val_macro_f1 + 1e-12:
                best = Probe(kind, C, score, model, labels)
    return best
