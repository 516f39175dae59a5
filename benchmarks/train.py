"""Training throughput: rbft's training path against a plain PyTorch loop, same model, same batches.

Both fully fine-tune the shipped base model on the same label conversations of world clips
(frames decoded beforehand, kept in memory), batch size 8, AdamW, and both collate every
batch with rbft's collator inside the timed loop. Each runs in its own process so its peak
RSS is its own. Steps after the first `--warmup` are timed.

rbft_samples_per_s    through rbft.training.train (HF Trainer)
plain_samples_per_s   forward, backward, AdamW step, zero_grad; nothing else
overhead              plain / rbft (goal <= 1.15)
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from pathlib import Path

BATCH = 8


def _setup(clips: int):
    from rbft.data.collate import VideoChatCollator
    from rbft.data.manifest import load_manifest
    from rbft.data.video import read_video
    from rbft.modeling import load_model, load_processor
    from rbft.prompts import label_examples
    from rbft.world.generate import Splits, generate_world
    from rbft.basemodel.recipe import SAMPLING
    from rbft.world.tasks import TASKS

    tmp = tempfile.mkdtemp()
    generate_world(tmp, seed=5, splits=Splits(train=clips, val=0, test=0))
    records = load_manifest(Path(tmp) / "home-security.jsonl")
    frames = {r.video: read_video(r.video, SAMPLING).frames for r in records}

    processor = load_processor("rbft-world-base")
    return (load_model("rbft-world-base", dtype="float32"), VideoChatCollator(processor, frames.__getitem__),
            label_examples(TASKS["home-security"], records), tmp)


def _rbft(clips: int, steps: int, warmup: int, queue) -> None:
    import torch
    from transformers import TrainerCallback

    from rbft.config import StageConfig, TrainingConfig
    from rbft.training import train

    torch.manual_seed(0)
    model, collator, examples, tmp = _setup(clips)
    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    settings = TrainingConfig(method="full", train_vision=True, batch_size=BATCH, gradient_accumulation=1,
                              warmup_ratio=0.0, weight_decay=0.0, logging_steps=10, save_steps=10 ** 6, report_to=[])
    train(model, collator, examples, Path(tmp) / "out", settings,
          StageConfig(epochs=steps * BATCH / len(examples), learning_rate=1e-4), callbacks=[Clock()])
    timed = stamps[warmup:]
    queue.put({"samples_per_s": (len(timed) - 1) * BATCH / (timed[-1] - timed[0]), "steps": len(stamps),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _plain(clips: int, steps: int, warmup: int, queue) -> None:
    import torch

    torch.manual_seed(0)
    model, collator, examples, _ = _setup(clips)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    stamps = []
    for step in range(steps):
        rows = [examples[order[(step * BATCH + i) % len(order)]] for i in range(BATCH)]
        loss = model(**collator(rows)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        stamps.append(time.perf_counter())
    timed = stamps[warmup:]
    queue.put({"samples_per_s": (len(timed) - 1) * BATCH / (timed[-1] - timed[0]), "steps": len(stamps),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=80)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    context = mp.get_context("spawn")
    results = {}
    for name, target in (("plain", _plain), ("rbft", _rbft)):
        queue = context.Queue()
        proc = context.Process(target=target, args=(args.clips, args.steps, args.warmup, queue))
        proc.start()
        results[name] = queue.get()
        proc.join()
    out = {"batch_size": BATCH, "steps": args.steps, "warmup_steps": args.warmup,
           "rbft_samples_per_s": round(results["rbft"]["samples_per_s"], 2),
           "plain_samples_per_s": round(results["plain"]["samples_per_s"], 2),
           "overhead": round(results["plain"]["samples_per_s"] / results["rbft"]["samples_per_s"], 3),
           "rbft_peak_rss_mb": round(results["rbft"]["peak_rss_mb"]),
           "plain_peak_rss_mb": round(results["plain"]["peak_rss_mb"]),
           "machine": f"{platform.machine()} {platform.python_version()}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
