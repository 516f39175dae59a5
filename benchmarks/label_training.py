"""Is what the demo's task needs in the base model's features, and does label training reach it? One run.

On the demo's own split (the world of `rbft demo`: seed 0, 160 train / 40 val / 300 test clips):

probe_macro_f1          a linear probe (scikit-learn logistic regression, class-balanced, features
                        standardised) on the frozen shipped model's hidden state where the label's
                        token is predicted (after P_label, the persona and the video), trained on the
                        train clips, scored on the test clips
probe_vision_macro_f1   the same on the vision tower's video tokens, max-pooled
direct_sft_macro_f1     direct SFT, the demo's label-training settings, one seed, best epoch by val
rbft_macro_f1           RB-FT (the base model's own rationales, Stage I, Stage II), the same settings
majority_macro_f1       a classifier that answers the majority label for every clip

Each method's predicted label counts are printed, so a model that answers one label for
every clip shows as such. The last line printed is one JSON object with every figure.
`--quick` runs the quick demo's smaller split instead.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rbft.config import load_config
from rbft.data.cache import FrameCache
from rbft.data.manifest import load_manifest
from rbft.demo import FULL, QUICK, prepare
from rbft.modeling import load_for_videos
from rbft.pipeline import run
from rbft.prompts import label_examples


@torch.no_grad()
def features(model, collator, task, records) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: the last layer's hidden state at the label's position, and the max-pooled video tokens."""
    video_token = model.config.video_token_id
    at_label, vision = [None] * len(records), [None] * len(records)
    for rows, batch in collator.prompt_batches(label_examples(task, records), 16):
        hidden = model(**batch, output_hidden_states=True).hidden_states
        for b, i in enumerate(rows):
            at_label[i] = hidden[-1][b, -1].numpy()  # left-padded: every prompt ends at the last column
            vision[i] = hidden[0][b, batch["input_ids"][b] == video_token].max(0).values.numpy()
    return np.stack(at_label), np.stack(vision)


def probe(train_x, train_y, test_x, test_y, labels) -> tuple[float, Counter]:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced"))
    predicted = clf.fit(train_x, train_y).predict(test_x)
    return float(f1_score(test_y, predicted, labels=labels, average="macro", zero_division=0)), Counter(predicted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick demo's split (64 / 16 / 64 clips)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        config = load_config(prepare(Path(tmp) / "demo.yaml", QUICK if args.quick else FULL))
        config = config.model_copy(update={"seeds": [args.seed], "ablations": {},
                                           "label_budget": config.label_budget.model_copy(update={"videos": []})})
        records = load_manifest(config.data.manifest, config.task.labels)
        split = {s: [r for r in records if r.split == s] for s in ("train", "test")}
        labels = list(config.task.labels)
        cache, sampling = FrameCache(Path(tmp) / "cache"), config.data.sampling()
        model, collator = load_for_videos(config.model.name_or_path, lambda p: cache.load(p, sampling), "float32")
        seconds["world"] = time.perf_counter() - t

        t = time.perf_counter()
        (train_label, train_vision), (test_label, test_vision) = (
            features(model, collator, config.task, split[s]) for s in ("train", "test"))
        y_train, y_test = [r.label for r in split["train"]], [r.label for r in split["test"]]
        probe_f1, probe_counts = probe(train_label, y_train, test_label, y_test, labels)
        vision_f1, vision_counts = probe(train_vision, y_train, test_vision, y_test, labels)
        seconds["probe"] = time.perf_counter() - t

        t = time.perf_counter()
        results = run(config, Path(tmp) / "run", log=lambda m: print(m, file=sys.stderr))["results"]
        seconds["fine_tune"] = time.perf_counter() - t
        predicted = {}
        for method in ("direct_sft", "rbft"):
            rows = [json.loads(x) for x in (Path(tmp) / "run" / "predictions" / f"{method}-seed{args.seed}.jsonl")
                    .read_text().splitlines()]
            predicted[method] = Counter(r["predicted"] for r in rows)

    share = max(Counter(y_test).values()) / len(y_test)
    result = {
        "train_clips": len(y_train), "test_clips": len(y_test), "test_labels": dict(Counter(y_test)),
        "probe_macro_f1": probe_f1, "probe_vision_macro_f1": vision_f1,
        "direct_sft_macro_f1": results["methods"]["direct_sft"]["macro_f1"],
        "rbft_macro_f1": results["methods"]["rbft"]["macro_f1"],
        "zero_shot_macro_f1": results["methods"]["zero_shot"]["macro_f1"],
        "majority_macro_f1": 2 * share / (1 + share) / len(labels),
        "predicted": {"probe": dict(probe_counts), "probe_vision": dict(vision_counts),
                      **{m: dict(c) for m, c in predicted.items()}},
        "settings": {"balance": config.training.balance, "stage2": config.training.stage2.model_dump(),
                     "seed": args.seed},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "machine": f"{platform.machine()} {platform.python_version()}",
    }
    for name in ("probe", "probe_vision", "direct_sft", "rbft"):
        print(f"{name}: macro-F1 {result[name + '_macro_f1']:.3f}, predicted {result['predicted'][name]}",
              file=sys.stderr)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
