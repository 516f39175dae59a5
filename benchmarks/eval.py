"""Evaluation speed on the demo model: label scoring against free generation, side by side in one run.

On held-out world clips, home-security's P_label, the shipped base model (float32, CPU):

score_s_per_video     label scoring as `rbft run` does it: one prompt forward per video, every
                      label's reply scored from its key/value cache in one more forward
full_s_per_video      label scoring the plain way: one full sequence per (video, label)
generate_s_per_video  free generation (greedy, `--max-new-tokens`, batched as eval does) and parsing

Ratios: scoring_speedup = generate / score (goal >= 3), at eval's batch size; shared_prefix_speedup =
full / score; scoring_speedup_batch1 the same as scoring_speedup with one video at a time, both ways
(as `rbft predict` on a single clip or a server answering one request).
`same_scores` is the largest difference between the two scorings' log-probabilities (they must
agree to float precision); `parse_failure_rate` is the share of free replies naming no label.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rbft.config import EvalConfig
from rbft.data.manifest import load_manifest
from rbft.data.video import read_video
from rbft.generation import generate
from rbft.modeling import SHIPPED_MODEL, load_for_videos
from rbft.prompts import label_examples, label_target, parse_label
from rbft.scoring import label_logprobs, label_logprobs_full
from rbft.basemodel.recipe import SAMPLING
from rbft.world.generate import Splits, generate_world
from rbft.world.tasks import TASKS


def timed(fn, clips: int) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) / clips, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHIPPED_MODEL))
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=EvalConfig().max_new_tokens)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    task = TASKS["home-security"]
    labels = list(task.labels)
    with tempfile.TemporaryDirectory() as tmp:
        generate_world(tmp, seed=21, splits=Splits(train=0, val=0, test=args.clips))
        videos = [r for r in load_manifest(Path(tmp) / "home-security.jsonl", labels) if r.split == "test"]
        frames = {v.video: read_video(v.video, SAMPLING) for v in videos}
    model, collator = load_for_videos(args.model, frames.__getitem__, "float32")
    examples, targets = label_examples(task, videos), [label_target(x) for x in labels]
    label_logprobs(model, collator, examples[:2], targets)  # warm-up
    n, bs = len(videos), args.batch_size
    score_s, fast = timed(lambda: label_logprobs(model, collator, examples, targets, bs), n)
    full_s, full = timed(lambda: label_logprobs_full(model, collator, examples, targets, bs), n)
    generate_s, replies = timed(lambda: [parse_label(r, labels) for r in generate(
        model, collator, examples, max_new_tokens=args.max_new_tokens, batch_size=bs)], n)
    # one video at a time (`rbft predict` on a clip, a server answering one request), both ways alike
    few = examples[: max(8, n // 4)]
    score1_s, _ = timed(lambda: label_logprobs(model, collator, few, targets, 1), len(few))
    generate1_s, _ = timed(lambda: generate(model, collator, few, max_new_tokens=args.max_new_tokens, batch_size=1),
                           len(few))
    figures = {
        "clips": n, "model": Path(args.model).name, "max_new_tokens": args.max_new_tokens,
        "score_s_per_video": round(score_s, 4), "full_s_per_video": round(full_s, 4),
        "generate_s_per_video": round(generate_s, 4),
        "batch_size": bs, "scoring_speedup": round(generate_s / score_s, 2),
        "shared_prefix_speedup": round(full_s / score_s, 2),
        "score_s_per_video_batch1": round(score1_s, 4), "generate_s_per_video_batch1": round(generate1_s, 4),
        "scoring_speedup_batch1": round(generate1_s / score1_s, 2),
        "same_scores": float(np.abs(fast - full).max()),
        "same_argmax": float((fast.argmax(1) == full.argmax(1)).mean()),
        "parse_failure_rate": sum(r is None for r in replies) / n,
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
    }
    print(f"label scoring {score_s * 1000:.0f} ms/video, full sequences {full_s * 1000:.0f} ms/video, "
          f"free generation + parsing {generate_s * 1000:.0f} ms/video")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
