"""A run's repeated work over the same videos with a frozen vision tower: with and without rbft's tower cache, and
the training loss over every column against the reply's columns only, side by side in one run.

The shipped base model on world clips (frames decoded beforehand, kept in memory), float32 on the CPU, the
demo's settings (full fine-tuning, `train_vision: false`, batch 8):

score_s_per_video_plain    label scoring (`rbft.scoring.label_logprobs`), the tower run on every pass
score_s_per_video_cached   the same passes with the tower cache (`rbft.towercache`), after the pass that fills it
                           (an eval after training, or the next model's eval)
train_s_per_step_plain     training steps (forward, loss, backward, AdamW) with the model's own loss over
                           every column and the tower run on every step
train_s_per_step_cached    the same steps with the tower cache filled (a second epoch, the next stage)
train_s_per_step_rbft      and with rbft's loss (`_Trainer.compute_loss`: the output layer over the reply's
                           columns only): what a label stage's step costs
Ratios: score_speedup, train_speedup_cache, train_speedup (plain / rbft). `same_scores` is the largest
difference between the plain and cached scores, `same_loss` between the losses of the three ways (float
precision). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import TrainingArguments

from rbft import towercache
from rbft.basemodel.recipe import SAMPLING
from rbft.config import TrainingConfig
from rbft.data.manifest import load_manifest
from rbft.data.video import read_video
from rbft.modeling import load_for_videos
from rbft.prompts import label_examples, label_target
from rbft.scoring import label_logprobs
from rbft.training import _Trainer, prepare
from rbft.world.generate import Splits, generate_world
from rbft.world.tasks import TASKS

BATCH = 8


def model_for(cached: bool, frames):
    """The shipped model and its collator, its tower wrapped by the cache or not (an empty cache either way)."""
    towercache.CACHE.clear()
    if towercache.CACHE.max_bytes < 0:  # (read from the environment at the first attach)
        towercache.CACHE.max_bytes = towercache.limit()
    size = towercache.CACHE.max_bytes
    towercache.CACHE.max_bytes = size if cached else 0  # attach leaves a model alone while the cache is off
    try:
        return load_for_videos("rbft-world-base", frames, "float32")
    finally:
        towercache.CACHE.max_bytes = size


def scoring(cached: bool, frames, examples, targets, passes: int) -> tuple[float, np.ndarray]:
    model, collator = model_for(cached, frames)
    label_logprobs(model, collator, examples, targets, BATCH)  # the pass that fills the cache (and warms up)
    started = time.perf_counter()
    for _ in range(passes):
        scores = label_logprobs(model, collator, examples, targets, BATCH)
    return (time.perf_counter() - started) / passes / len(examples), scores


def training(cached: bool, own_loss: bool, frames, examples, steps: int, tmp: str) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    model, collator = model_for(cached, frames)
    settings = TrainingConfig(method="full", train_vision=False, batch_size=BATCH, report_to=[])
    model = prepare(model, settings)
    model.train()
    trainer = _Trainer(model=model, args=TrainingArguments(tmp, use_cpu=True, report_to="none"),
                       data_collator=collator)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batches = [collator(examples[i:i + BATCH]) for i in range(0, len(examples), BATCH)]
    losses, stamps = [], []
    for step in range(len(batches) + steps):  # the first epoch fills the cache (and warms up): not timed
        batch = batches[step % len(batches)]
        loss = model(**batch).loss if own_loss else trainer.compute_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        stamps.append(time.perf_counter())
    timed = stamps[len(batches) - 1:]
    return (timed[-1] - timed[0]) / steps, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    task = TASKS["home-security"]
    with tempfile.TemporaryDirectory() as tmp:
        generate_world(tmp, seed=23, splits=Splits(train=args.clips, val=0, test=0))
        videos = load_manifest(Path(tmp) / "home-security.jsonl", list(task.labels))
        frames = {v.video: read_video(v.video, SAMPLING) for v in videos}
        examples = label_examples(task, videos)
        targets = [label_target(x) for x in task.labels]
        score_plain, plain = scoring(False, frames.__getitem__, examples, targets, args.passes)
        score_cached, cached = scoring(True, frames.__getitem__, examples, targets, args.passes)
        labelled = [replace(e, target=label_target(v.label)) for e, v in zip(examples, videos)]
        train_plain, loss_plain = training(False, True, frames.__getitem__, labelled, args.steps, tmp)
        train_cached, loss_cached = training(True, True, frames.__getitem__, labelled, args.steps, tmp)
        train_rbft, loss_rbft = training(True, False, frames.__getitem__, labelled, args.steps, tmp)
    figures = {
        "clips": len(videos), "batch_size": BATCH, "passes": args.passes, "steps": args.steps,
        "score_s_per_video_plain": round(score_plain, 4), "score_s_per_video_cached": round(score_cached, 4),
        "score_speedup": round(score_plain / score_cached, 2),
        "train_s_per_step_plain": round(train_plain, 3), "train_s_per_step_cached": round(train_cached, 3),
        "train_s_per_step_rbft": round(train_rbft, 3),
        "train_speedup_cache": round(train_plain / train_cached, 2),
        "train_speedup": round(train_plain / train_rbft, 2),
        "same_scores": float(np.abs(plain - cached).max()),
        "same_loss": max(abs(a - b) for other in (loss_cached, loss_rbft) for a, b in zip(loss_plain, other)),
        "threads": torch.get_num_threads(), "machine": f"{platform.machine()} {platform.python_version()}"}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
