"""What the shipped base model knows, and the rationale gap it leaves, measured in one run.

On held-out world clips (the test split of a world drawn with a seed the pretraining
never used), with the rationale-style prompt of the `home-security` task:

subject_accuracy    share of descriptions whose first named subject is the clip's main subject   goal >= 0.8
scene_accuracy      share of descriptions that name the clip's scene first                          goal >= 0.8
action_accuracy     the same for the main subject's action (no goal; motion is the hard part)
zero_shot_macro_f1  home-security macro-F1 of the base model by label scoring (it never saw the labels)
finetuned_macro_f1  the same after a short fine-tune on the world's labelled train split

and on the demo's 160 training clips (the first 160 of the same world), the rationales the
demo's Stage I data is made of (`rationales`), label-hinted as the demo writes them:

layout              share that keep every line of rbft's layout and conclude with the stated label  goal >= 0.9
distinct_reasoning  distinct reasoning lines over the 160                                            goal >= 10
grounded            share whose reasoning names the subject or the action of their own description   goal >= 0.8
label_free_accuracy with the label-free prompt, the share whose conclusion is the true label
                    (a zero-shot-with-reasoning figure), with the conclusions' label counts

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from rbft.basemodel.card import write_card
from rbft.basemodel.recipe import SAMPLING
from rbft.config import StageConfig, TrainingConfig
from rbft.data.cache import FrameCache
from rbft.data.collate import Example
from rbft.data.manifest import load_manifest
from rbft.generation import generate
from rbft.modeling import SHIPPED_MODEL, load_for_videos
from rbft.data.rationales import conclusion, rejection
from rbft.prompts import label_examples, label_target, rationale_examples, rationale_prompt, system_prompt
from rbft.scoring import label_logprobs
from rbft.training import train
from rbft.world.generate import Splits, generate_world, load_scenes
from rbft.world.judge import judge, read_rationale, reasoning_grounded
from rbft.world.tasks import TASKS

TASK = TASKS["home-security"]
DEMO_TRAIN = 160  # the demo's training clips: the first 160 of the world drawn with seed 0


def macro_f1(model, collator, records) -> tuple[float, float]:
    labels = list(TASK.labels)
    scores = label_logprobs(model, collator, label_examples(TASK, records), [label_target(x) for x in labels])
    truth = [r.label for r in records]
    pred = [labels[i] for i in scores.argmax(1)]
    return (float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
            float(accuracy_score(truth, pred)))


def rationale_figures(hinted: list[str], free: list[str], records) -> dict:
    """How well the hinted rationales follow rbft's layout toward the stated label, and the label-free verdicts."""
    labels = list(TASK.labels)
    # rbft's own filter, length aside: every line of the layout, and a conclusion naming the stated label only
    follows = [rejection(t, r.label, labels, min_words=0) is None for t, r in zip(hinted, records)]
    reasoning = [read_rationale(t).get("reasoning", "") for t in hinted]
    free_verdicts = [conclusion(t, labels) for t in free]
    return {"clips": len(records), "layout": float(np.mean(follows)),
            "distinct_reasoning": len({x for x in reasoning if x}),
            "grounded": float(np.mean([reasoning_grounded(t) for t in hinted])),
            "label_free_accuracy": float(np.mean([v == r.label for v, r in zip(free_verdicts, records)])),
            "label_free_conclusions": {str(k): free_verdicts.count(k) for k in [*labels, None]},
            "truth": {k: sum(r.label == k for r in records) for k in labels}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--clips", type=int, default=200, help="held-out clips to measure on")
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs of the short label fine-tune")
    parser.add_argument("--card", action="store_true", help="write the figures into the model's card")
    args = parser.parse_args()
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        world = Path(tmp) / "world"
        generate_world(world, seed=0, splits=Splits(train=200, val=0, test=args.clips))
        records = load_manifest(world / "home-security.jsonl", TASK.labels)
        train_set = [r for r in records if r.split == "train"]
        test_set = [r for r in records if r.split == "test"]
        scenes = load_scenes(world)
        cache = FrameCache(Path(tmp) / "cache")
        model, collator = load_for_videos(args.model, lambda path: cache.load(path, SAMPLING).frames, "float32")
        timings["setup"] = time.perf_counter() - t

        t = time.perf_counter()
        prompts = [Example(r.id, r.video, rationale_prompt(TASK), system=system_prompt(TASK)) for r in test_set]
        texts = generate(model, collator, prompts, max_new_tokens=80, batch_size=16)
        verdicts = [judge(text, scenes[r.id]) for text, r in zip(texts, test_set)]
        timings["describe"] = time.perf_counter() - t
        for text, r in list(zip(texts, test_set))[:3]:
            print(f"{r.id} [{scenes[r.id]['subjects'][0]['kind']}, {r.meta['scene']}]: {text!r}")

        t = time.perf_counter()
        demo = train_set[:DEMO_TRAIN]
        hinted, free = (generate(model, collator, rationale_examples(TASK, demo, hint), max_new_tokens=160,
                                 batch_size=16) for hint in (True, False))
        rationales = rationale_figures(hinted, free, demo)
        timings["rationales"] = time.perf_counter() - t
        for text, r in list(zip(hinted, demo))[:2]:
            print(f"{r.id} [{r.label}], label-hinted: {text!r}")

        t = time.perf_counter()
        zero_f1, zero_acc = macro_f1(model, collator, test_set)
        timings["zero_shot"] = time.perf_counter() - t

        t = time.perf_counter()
        settings = TrainingConfig(method="full", batch_size=8, gradient_accumulation=1, weight_decay=0.0, report_to=[])
        tuned = train(model, collator, label_examples(TASK, train_set), Path(tmp) / "finetune", settings,
                      StageConfig(epochs=args.epochs, learning_rate=2e-4), seed=0)
        timings["finetune"] = time.perf_counter() - t
        t = time.perf_counter()
        tuned_f1, tuned_acc = macro_f1(tuned, collator, test_set)
        timings["finetuned_eval"] = time.perf_counter() - t

    mean = lambda key: float(np.mean([v[key] for v in verdicts]))  # noqa: E731
    result = {
        "n": len(test_set), "subject_accuracy": mean("subject"), "scene_accuracy": mean("scene"),
        "action_accuracy": mean("action"), "zero_shot_macro_f1": zero_f1, "zero_shot_accuracy": zero_acc,
        "finetuned_macro_f1": tuned_f1, "finetuned_accuracy": tuned_acc, "gap": tuned_f1 - zero_f1,
        "train_clips": len(train_set), "finetune_epochs": args.epochs, "rationales": rationales,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "machine": f"{platform.machine()} {platform.python_version()}",
    }
    print(f"subject {result['subject_accuracy']:.3f}  scene {result['scene_accuracy']:.3f}  "
          f"action {result['action_accuracy']:.3f}  zero-shot macro-F1 {zero_f1:.3f}  "
          f"fine-tuned macro-F1 {tuned_f1:.3f}  rationales: layout {rationales['layout']:.3f}, "
          f"{rationales['distinct_reasoning']} distinct reasoning lines, grounded {rationales['grounded']:.3f}, "
          f"label-free accuracy {rationales['label_free_accuracy']:.3f}", file=sys.stderr)
    rounded = lambda d: {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}  # noqa: E731
    result = rounded(result)
    result["rationales"] = rounded(result["rationales"])
    if args.card:
        write_card(args.model, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
