"""rbft's GPU path at real model size: random-weight Qwen2.5-VL (3B and 7B) in bfloat16, one GPU, synthetic videos.

Each size is built with Qwen2.5-VL's published dimensions and random weights, saved as a model
folder, and taken through rbft's own code on 8-frame 360x420 videos (random pixels, in memory):

load          rbft.modeling.load_for_videos: the folder onto this process's GPU
generation    rbft.generation.generate_batches: rationale prompts (label stated), batched, greedy,
              `--new-tokens` each (end of turn disabled, so every reply is that long)
scoring       rbft.scoring.label_logprobs: the three labels of home-security, batched
lora          rbft.training.train: Stage II's label conversations, LoRA on the language model,
              gradient checkpointing, the tower frozen; `--steps` optimizer steps, the first two untimed
plain         the same LoRA model, batches and collator in a plain PyTorch loop (forward, backward, AdamW
              step under bfloat16 autocast): `overhead` = plain / rbft samples per second
full          full fine-tuning with rbft.training.train, where the weights, gradients and AdamW's state
              (16 bytes a parameter) fit in 85% of the GPU (the 3B model on an 80 GB card)
save/reload   rbft.modeling.save_model then load_model, seconds each (an adapter for LoRA, the merged
              model for full fine-tuning)

Figures: videos/s and new tokens/s of generation, videos/s of scoring (`scoring_speedup` =
scoring / generation videos per second), samples/s of training, peak GPU memory of each part
(torch.cuda.max_memory_allocated), and MFU: model FLOPs over the card's dense bfloat16 peak
(stated; `--peak-tflops` for a card not in PEAKS). Model FLOPs per sample: (6 for full
fine-tuning, 4 for LoRA: no weight gradients of frozen weights) x language-model parameters x
tokens, plus 2 x vision parameters x patches (the frozen tower runs forward only); attention's
own FLOPs and checkpointing's recomputation are not counted. The last line printed is one JSON
object with every figure, the card and the library versions.

A GPU machine without a package index needs only what rbft imports here: torch, transformers,
peft, accelerate, tokenizers, numpy, pillow, httpx, pyyaml and pydantic (not PyAV: no video
file is read). Where pydantic is missing, bring its wheels along, e.g. on a machine with the index:
`pip download pydantic --only-binary :all: --python-version 3.12 --platform manylinux2014_x86_64 -d wheels`
(about 2.5 MB), then there: `pip install --no-index --find-links wheels pydantic` and
`PYTHONPATH=src python benchmarks/gpu.py`. `--sizes tiny` runs the same path in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, \
    TrainerCallback

from rbft.basemodel.architecture import CHAT_TEMPLATE, corpus, train_tokenizer
from rbft.config import StageConfig, TrainingConfig
from rbft.data.manifest import VideoRecord
from rbft.generation import Decoding, generate_batches
from rbft.modeling import is_vision, load_for_videos, load_model, new_model, save_model
from rbft.prompts import label_examples, label_target, rationale_examples
from rbft.scoring import label_logprobs
from rbft.training import prepare, train
from rbft.world.tasks import TASKS

TASK = TASKS["home-security"]
VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, spatial_merge_size=2,
              temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
# Qwen2.5-VL-3B/7B-Instruct's config.json; `tiny` keeps the shapes' kinds at toy size for a CPU check
SIZES = {
    "3b": (dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True), VISION),
    "7b": (dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False), VISION),
    "tiny": (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=4096, tie_word_embeddings=True,
                  rope_parameters=dict(ROPE, mrope_section=[2, 3, 3])),
             dict(VISION, depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1])),
}
# dense bfloat16 peak, TFLOP/s, by the first of these found in the card's name (so H100 NVL before H100, A100 before A10)
PEAKS = [("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("B200", 2250.0),
         ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10G", None), ("A10", 125.0)]  # (A10G: unpublished)
FRAMES, HEIGHT, WIDTH = 8, 360, 420


def peak_tflops(name: str, given: float | None) -> float | None:
    return given or next((peak for part, peak in PEAKS if part in name), None)


def build(size: str, folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[int, int]:
    """Write a random-weight Qwen2.5-VL of `size` with its processor to `folder`; (language, vision) parameters."""
    tokenizer = train_tokenizer(corpus(n_records=300))
    ids = tokenizer.convert_tokens_to_ids
    text, vision = SIZES[size]
    config = Qwen2_5_VLConfig(
        text_config=dict({"rope_parameters": ROPE, **text}, max_position_embeddings=128000, rms_norm_eps=1e-6,
                         bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"),
                         pad_token_id=ids("<|endoftext|>")),
        vision_config=dict(vision, out_hidden_size=text["hidden_size"]), image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=text["tie_word_embeddings"])
    sizes = dict(patch_size=14, temporal_patch_size=2, merge_size=2,
                 size={"shortest_edge": 56 * 56, "longest_edge": HEIGHT * WIDTH})
    if hasattr(Qwen2VLVideoProcessor, "cap_pixels_per_frame"):  # (transformers releases that have the choice)
        sizes["cap_pixels_per_frame"] = True
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=CHAT_TEMPLATE)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # random weights made where they run: a 7B model's init on a CPU takes minutes
            model = new_model(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    counts = [sum(p.numel() for n, p in model.named_parameters() if is_vision(n) == v) for v in (False, True)]
    embeddings = model.get_input_embeddings().weight.numel()
    del model
    return counts[0] - (0 if text["tie_word_embeddings"] else embeddings), counts[1]


def videos(n: int) -> tuple[list[VideoRecord], dict]:
    rng = np.random.default_rng(0)
    labels = list(TASK.labels)
    records = [VideoRecord(f"v{i}", Path(f"v{i}"), labels[i % len(labels)], "train") for i in range(n)]
    return records, {r.video: rng.integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8) for r in records}


class Clock(TrainerCallback):
    def __init__(self):
        self.stamps = []

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.stamps.append(time.perf_counter())


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_reset() -> None:
    gc.collect()  # models of the part before, if anything still holds them
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if torch.cuda.is_available() else None


def per_second(stamps: list[float], batch: int) -> float:
    timed = stamps[2:] if len(stamps) > 3 else stamps
    return (len(timed) - 1) * batch / (timed[-1] - timed[0])


def sample_flops(collator, examples, params: tuple[int, int], per_token: int) -> float:
    """Model FLOPs of one training sample, averaged over `examples` (see the module's docstring)."""
    batch = collator(examples)
    tokens = int(batch["attention_mask"].sum()) / len(examples)
    patches = batch["pixel_values_videos"].shape[0] / len(examples)
    return per_token * params[0] * tokens + 2 * params[1] * patches


def bench(size: str, work: Path, args, peak: float | None) -> dict:
    gpu = torch.cuda.is_available()
    device, dtype = torch.device("cuda" if gpu else "cpu"), torch.bfloat16 if gpu else torch.float32
    name = "bfloat16" if gpu else "float32"
    folder = work / size
    started = time.perf_counter()
    params = build(size, folder, device, dtype)
    out: dict = {"language_parameters": params[0], "vision_parameters": params[1],
                 "build_s": round(time.perf_counter() - started, 1)}
    records, clips = videos(args.videos)
    frames = clips.__getitem__

    _peak_reset()
    started = time.perf_counter()
    model, collator = load_for_videos(folder, frames, name, "sdpa")
    _sync()
    out["load_s"] = round(time.perf_counter() - started, 1)
    model.generation_config.eos_token_id = None  # random weights: every reply runs its full length
    prompts = rationale_examples(TASK, records, True)  # the label stated, as rbft writes rationales
    decoding = Decoding(max_new_tokens=args.new_tokens)
    list(generate_batches(model, collator, prompts[:args.batch], decoding, args.batch))  # warm-up
    _sync()
    started = time.perf_counter()
    list(generate_batches(model, collator, prompts, decoding, args.batch))
    _sync()
    seconds = time.perf_counter() - started
    out["generation"] = {"videos_per_s": round(len(prompts) / seconds, 3),
                         "new_tokens_per_s": round(len(prompts) * args.new_tokens / seconds, 1),
                         "batch": args.batch, "peak_gb": _peak_gb()}
    labelled, targets = label_examples(TASK, records), [label_target(x) for x in TASK.labels]
    label_logprobs(model, collator, labelled[:args.batch], targets, args.batch)  # warm-up
    _peak_reset()
    _sync()
    started = time.perf_counter()
    label_logprobs(model, collator, labelled, targets, args.batch)
    _sync()
    scoring = len(labelled) / (time.perf_counter() - started)
    out["scoring"] = {"videos_per_s": round(scoring, 3), "labels": len(targets), "peak_gb": _peak_gb()}
    out["scoring_speedup"] = round(scoring / out["generation"]["videos_per_s"], 2)
    del model

    lora = TrainingConfig(method="lora", batch_size=args.batch, gradient_accumulation=1, gradient_checkpointing=True,
                          warmup_ratio=0.0, weight_decay=0.0, report_to=[], checkpoints="none", balance="none")
    out["lora"] = _train(folder, frames, labelled, lora, work / f"{size}-lora", args, name, params, 4, peak)
    out["lora"]["plain_samples_per_s"] = _plain(folder, frames, labelled, lora, args, name)
    out["lora"]["overhead"] = round(out["lora"]["plain_samples_per_s"] / out["lora"]["samples_per_s"], 3)
    memory = torch.cuda.get_device_properties(0).total_memory if gpu else None
    if memory is None or 16 * sum(params) < 0.85 * memory:
        full = lora.model_copy(update={"method": "full", "batch_size": args.full_batch})  # (logits of 152k words)
        out["full"] = _train(folder, frames, labelled, full, work / f"{size}-full", args, name, params, 6, peak)
    else:
        out["full"] = f"skipped: {16 * sum(params) / 2 ** 30:.0f} GB of weights, gradients and AdamW state"
    shutil.rmtree(folder, ignore_errors=True)
    return out


def _train(folder: Path, frames, examples, training: TrainingConfig, out: Path, args, dtype: str,
           params: tuple[int, int], per_token: int, peak: float | None) -> dict:
    model, collator = load_for_videos(folder, frames, dtype, "sdpa", training=True)
    clock, batch = Clock(), training.batch_size
    _peak_reset()
    trained = train(model, collator, examples, out, training, StageConfig(epochs=1, min_steps=args.steps,
                                                                         learning_rate=1e-5), callbacks=[clock])
    rate = per_second(clock.stamps, batch)
    figures = {"samples_per_s": round(rate, 3), "steps": len(clock.stamps), "batch": batch, "peak_gb": _peak_gb()}
    if peak:
        figures["mfu"] = round(rate * sample_flops(collator, examples[:batch], params, per_token) / (peak * 1e12), 4)
    started = time.perf_counter()
    save_model(trained, collator.processor, out / "model", merge=training.method == "full")
    figures["save_s"] = round(time.perf_counter() - started, 1)
    del trained, model
    started = time.perf_counter()
    reloaded = load_model(out / "model", dtype, "sdpa")
    _sync()
    figures["reload_s"] = round(time.perf_counter() - started, 1)
    del reloaded
    shutil.rmtree(out, ignore_errors=True)
    return figures


def _plain(folder: Path, frames, examples, training: TrainingConfig, args, dtype: str) -> float:
    """The same model (LoRA as rbft wraps it), batches and collator, in a plain loop: samples per second."""
    model, collator = load_for_videos(folder, frames, dtype, "sdpa", training=True)
    model = prepare(model, training)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    stamps = []
    for step in range(args.steps):
        rows = [examples[(step * args.batch + i) % len(examples)] for i in range(args.batch)]
        batch = {k: v.to(device) for k, v in collator(rows).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        stamps.append(time.perf_counter())
    del model, optimizer
    return round(per_second(stamps, args.batch), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="comma-separated: 3b, 7b, tiny (default: 3b,7b on a GPU, "
                        "tiny on a CPU)")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--full-batch", type=int, default=2, help="batch of the full fine-tuning part")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak, TFLOP/s")
    parser.add_argument("--work", type=Path, default=None, help="folder for the model folders (default: a temporary one)")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    card = torch.cuda.get_device_name(0) if gpu else f"CPU ({platform.machine()})"
    peak = peak_tflops(card, args.peak_tflops) if gpu else args.peak_tflops
    sizes = (args.sizes or ("3b,7b" if gpu else "tiny")).split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="rbft-gpu-bench-"))
    started, results = time.perf_counter(), {}
    for size in sizes:
        results[size] = bench(size, work, args, peak)
        print(f"{size}: {json.dumps(results[size])}", flush=True)
    import accelerate
    import peft

    print(json.dumps({"card": card, "peak_bf16_tflops": peak, "frames": FRAMES, "frame_size": [HEIGHT, WIDTH],
                      "videos": args.videos, "sizes": results, "seconds": round(time.perf_counter() - started, 1),
                      "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                      "accelerate": accelerate.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}))


if __name__ == "__main__":
    main()
