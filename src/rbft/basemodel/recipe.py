"""The recipe that makes rbft's shipped base model: a tiny Qwen2-VL taught to describe world clips,
to know things about them, and to reason toward a verdict.

Steps: draw and encode pretraining clips (their own seed, never the task splits'),
decode them as any video is decoded, train a tokenizer on the pretraining text, build
the model from `architecture.model_config`, warm up its vision tower as a classifier of
the clips' facts (`rbft.basemodel.warmup`), then train the language side from scratch on
(clip, generic prompt) -> answer conversations: descriptions, captions, what one should
know about the situation, and made-up quizzes in rbft's rationale layout
(`rbft.basemodel.reasoning`). Both phases train through `rbft.training`. No task's label,
question or rule is ever in the text. The result is a standard Hugging Face folder with a
model card (`rbft.basemodel.card`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file

from rbft.basemodel.architecture import build_processor, corpus, model_config, train_tokenizer
from rbft.basemodel.copying import RepeatCollator, TextChatCollator
from rbft.basemodel.reasoning import KNOWLEDGE_PROMPTS, copy_drill, knowledge_answer, reasoning_example
from rbft.basemodel.card import write_card
from rbft.basemodel.warmup import FACTS, warm_up
from rbft.config import StageConfig, TrainingConfig
from rbft.data.collate import VideoChatCollator
from rbft.data.conversation import Example
from rbft.data.jsonl import read_jsonl
from rbft.data.video import read_video
from rbft.modeling import new_model, vision_tower
from rbft.prompts import DIMENSIONS, LAYOUT
from rbft.sampling import FrameSampling
from rbft.training import train
from rbft.world.captions import PROMPTS, answer
from rbft.world.generate import generate_clips
from rbft.world.scenes import sample_scenario

KIND_WEIGHTS = {"structured": 0.35, "caption": 0.2, "knowledge": 0.2, "who": 0.08, "where": 0.07, "action": 0.07,
                "time": 0.03}
SYSTEMS = (None, None, "You are a video analyst.", "You are a careful observer of home camera footage.",
           "You are a Home Camera Expert.", "You are a Pet Care Expert.", "You are a Safety Inspector.",
           "You are an expert in video understanding.")
# generic questions appended to the structured prompt, so that a task's rationale prompt
# ("... Then explain what matters for this question: <task question>") reads familiar
QUESTIONS = ("What is going on?", "Is anyone at the door?", "Who is in the house?", "Is everything fine here?",
             "What is the animal doing?", "Should someone look at this clip?", "What happened in the scene?")
SAMPLING = FrameSampling(num_frames=8, max_pixels=128 * 128)
# the version of what the conversations say (`rbft.basemodel.reasoning`, `rbft.world.captions`); a change there is a
# new recipe too, so it names a new work folder (2: the reasoning line no longer repeats the verdict's meaning)
CONVERSATIONS = 2
# what decides a warmed-up vision tower (the clips and the warm-up), for a model that takes another's tower
WARMUP_FIELDS = ("seed", "clips", "zoom_share", "init_seed", "warmup_epochs", "warmup_batch_size",
                 "warmup_learning_rate", "warmup_dense")
# the four-dimension lines of rbft's rationale layout (`rbft.prompts.LAYOUT`), without its reasoning and
# conclusion lines: descriptions leave them out; the made-up quizzes (`rbft.basemodel.reasoning`) have them
DIMENSION_LAYOUT = "\n".join(LAYOUT.splitlines()[:len(DIMENSIONS)])


@dataclass
class Recipe:
    """Everything that decides the shipped model; change it and the model must be re-made and re-shipped."""

    seed: int = 1000  # the pretraining clips' world seed (task worlds use other seeds)
    clips: int = 4000
    examples_per_clip: int = 3
    epochs: float = 1.2
    learning_rate: float = 1e-3
    batch_size: int = 8
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    init_seed: int = 0
    zoom_share: float = 0.4  # clips shown as a close-up of the main subject (see `close_up`)
    # epochs of the vision tower's warm-up as a classifier of the clips' facts, over every frame pair
    # of every clip, plain and mirrored (`rbft.basemodel.warmup`); after one, the tower stays frozen
    # while the language side learns to talk
    warmup_epochs: float = 3.0
    warmup_batch_size: int = 32  # frame pairs
    warmup_learning_rate: float = 2e-3
    warmup_dense: float = 1.0  # weight of every token naming the clip's facts (see `warmup.ClipClassifier`)
    # share of the four-dimension prompts with a question that also ask for the dimensions in rbft's
    # rationale layout (`DIMENSION_LAYOUT`), as a task's rationale prompt does
    layout_share: float = 0.5
    # conversations per clip that are a made-up quiz in rbft's rationale layout (`rbft.basemodel.reasoning`):
    # the description, a reasoning line toward a verdict, and the conclusion; the rest of a clip's
    # `examples_per_clip` are drawn from `KIND_WEIGHTS` (knowledge, descriptions, captions, ...)
    reasoning_per_clip: int = 1
    hint_share: float = 0.6  # share of the quizzes whose prompt states the verdict and its meaning
    # after the conversations, copy drills without a video (`reasoning.copy_drill`): a clip told in words, a
    # quiz with its verdict stated, the answer naming it. Off: they taught a model without in-context copying to
    # copy in their own format only (0 of 160 demo clips concluded with the stated label after them); the copy
    # phases below teach the copying itself
    drills: int = 0
    drill_batch_size: int = 32
    drill_learning_rate: float = 1e-3
    refresh_share: float = 0.25
    # and that many label-hinted quizzes drawn afresh (on clips drawn at random) in the same pass
    refresh_quizzes: int = 2000
    refresh_learning_rate: float = 5e-4
    # before any conversation, the language model learns to copy: random token sequences, each repeated on a new
    # line (`RepeatCollator`), the loss on the repeat. A tiny language model trained on the conversations alone
    # never learns to carry a verdict stated in the prompt into its answer (0 of 160 demo clips). Measured from
    # scratch on the shipped text config: repeated right after a separator, it learns to copy in a phase change
    # (the repeat's loss falls slowly from 7.6, chance, to 4.9 in 400 steps, then to 0.3 by step 520; batch 64,
    # 1e-3); with 0 to 16 random tokens between the two (no separator) it had learnt little after 1400 steps
    # (loss 6.8), and with 0 to 120 nothing after 1140 (batch 32)
    copy_steps: int = 1400
    copy_batch_size: int = 64
    copy_gap: int = 0  # random tokens between a sequence and its repeat's line, drawn from 0 to this
    # then the same with 0 to `copy_far_gap` random tokens between. Learnt with none, the copying held over 30
    # tokens but not over 100 (the repeats' tokens named right: 0.86 and 0.10), and a rationale's conclusion
    # is ~100 tokens after the prompt's last line, which states the verdict; after these steps, 0.99 and 0.96
    # (0.85 over 200 tokens). The loss fell from 3.3 to 0.2 within 200 steps: the mechanism was there
    copy_far_steps: int = 600
    copy_far_batch_size: int = 16
    copy_far_gap: int = 150
    copy_learning_rate: float = 1e-3
    # a model folder whose vision tower to take, frozen, instead of warming one up (real VLMs start from a
    # pretrained vision encoder too); None: warm one up as `warmup_*` say
    vision_tower: str | None = None

    def key(self) -> str:
        """Names the work folder, so a rerun of the same recipe resumes and another recipe starts afresh."""
        made = {**asdict(self), "conversations": CONVERSATIONS, "facts": list(FACTS)}
        return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:12]

    def training(self) -> TrainingConfig:
        """Both phases' training settings (full training; each phase names its own budget)."""
        return TrainingConfig(method="full", train_vision=True, batch_size=self.batch_size, gradient_accumulation=1,
                              warmup_ratio=self.warmup_ratio, weight_decay=self.weight_decay, logging_steps=20,
                              report_to=[])


def _prompt(kind: str, rng: np.random.Generator, layout_share: float) -> str:
    prompt = str(rng.choice(PROMPTS[kind]))
    if kind == "structured" and rng.random() < 0.5:
        prompt += f" Then explain what matters for this question: {rng.choice(QUESTIONS)}"
        if rng.random() < layout_share:
            prompt += "\nAnswer in this layout:\n" + DIMENSION_LAYOUT
    return prompt


def examples_for(records, videos: Path, per_clip: int, rng: np.random.Generator,
                 layout_share: float = 0.0, reasoning: int = 0, hint_share: float = 0.6) -> list[Example]:
    """`per_clip` conversations per clip: a four-dimension description, `reasoning` made-up quizzes, then
    randomly drawn prompt kinds and personas.

    With `layout_share`, that share of the four-dimension prompts with a question also asks
    for rbft's rationale layout, so the base model knows the layout a task's rationale
    prompt asks for. Measured on the base model shipped before this was added: it named
    0.70 of held-out subjects under that prompt and 0.775 under the plain four-dimension
    one; 250 more steps with layout prompts raised the first to 0.755.
    """
    kinds, weights = list(KIND_WEIGHTS), np.array(list(KIND_WEIGHTS.values()))
    out = []
    for record in records:
        video = videos / f"{record.id}.mp4"
        for k in range(per_clip):
            if 1 <= k <= reasoning:
                system, prompt, reply = reasoning_example(record, rng, hint_share)
                out.append(Example(f"{record.id}/{k}", video, prompt, reply, system))
                continue
            kind = kinds[0] if k == 0 else str(rng.choice(kinds, p=weights / weights.sum()))
            system = SYSTEMS[int(rng.integers(len(SYSTEMS)))]
            if kind == "knowledge":
                prompt, reply = str(rng.choice(KNOWLEDGE_PROMPTS)), knowledge_answer(record, rng)
            else:
                prompt, reply = _prompt(kind, rng, layout_share), answer(record, kind, rng)
            out.append(Example(f"{record.id}/{k}", video, prompt, reply, system))
    return out


def close_up(frames: np.ndarray, record, zoom: float) -> np.ndarray:
    """The clip as a camera zoomed `zoom` times onto its main subject's path; `record`'s boxes follow.

    A from-scratch vision tower first learns what covers most of the picture (the scene);
    close-ups make the subjects cover most of it too, so it learns them as early.
    """
    boxes = [b for b in record.main.boxes if b is not None]
    size = frames.shape[1]
    crop = int(size / zoom)
    cx = (min(b[0] for b in boxes) + max(b[2] for b in boxes)) / 2
    cy = (min(b[1] for b in boxes) + max(b[3] for b in boxes)) / 2
    x0 = int(np.clip(cx - crop / 2, 0, size - crop))
    y0 = int(np.clip(cy - crop / 2, 0, size - crop))

    def moved(box):
        if box is None:
            return None
        x_0, y_0, x_1, y_1 = (int(np.clip(round((v - o) * size / crop), 0, size)) for v, o in zip(box, (x0, y0, x0, y0)))
        return [x_0, y_0, x_1, y_1] if x_1 > x_0 and y_1 > y_0 else None

    for subject in record.subjects:
        subject.boxes = [moved(b) for b in subject.boxes]
    record.objects = {name: [moved(b) for b in seq] for name, seq in record.objects.items()}
    return np.stack([np.asarray(Image.fromarray(f[y0:y0 + crop, x0:x0 + crop]).resize((size, size), Image.BILINEAR))
                     for f in frames])


def pretraining_clips(work: Path, recipe: "Recipe") -> list:
    """Write the recipe's clips (some as close-ups) to `work/videos`; return their scene records."""

    def maybe_close_up(index: int, record, frames: np.ndarray) -> np.ndarray:
        zoom = np.random.default_rng([recipe.seed, index, 1])
        if zoom.random() < recipe.zoom_share and any(b is not None for b in record.main.boxes):
            return close_up(frames, record, float(zoom.uniform(1.6, 2.4)))
        return frames

    return generate_clips(work, recipe.seed, recipe.clips, prefix="pre", transform=maybe_close_up)


def decode_all(paths: list[Path]) -> dict[Path, np.ndarray]:
    """Every clip's sampled frames, decoded once and kept in memory for the whole run."""
    return {p: read_video(p, SAMPLING).frames for p in paths}


def pretrain(out: str | Path, work: str | Path, recipe: Recipe = Recipe(), log=print) -> dict:
    """Make the base model in `out` (intermediate clips and checkpoints in `work`); returns the run's facts."""
    out, work = Path(out), Path(work)
    started = time.perf_counter()
    log(f"drawing {recipe.clips} pretraining clips (seed {recipe.seed}) ...")
    records = pretraining_clips(work, recipe)
    frames = decode_all([work / "videos" / f"{r.id}.mp4" for r in records])
    made = time.perf_counter()
    log("training the tokenizer ...")
    tokenizer = train_tokenizer(corpus())
    processor = build_processor(tokenizer)
    model = new_model(model_config(tokenizer), seed=recipe.init_seed)
    training = recipe.training()
    tower = {}
    if recipe.vision_tower:
        log(f"taking the vision tower of {recipe.vision_tower} ...")
        tower["vision_tower"] = take_tower(model, Path(recipe.vision_tower))
    elif recipe.warmup_epochs > 0:
        log(f"warming up the vision tower on the frame pairs of {len(records)} clips for {recipe.warmup_epochs} "
            "epochs ...")
        tower["vision_warmup"] = warm_up(
            model, processor, records, work, frames, training.model_copy(update={"batch_size": recipe.warmup_batch_size}),
            StageConfig(epochs=recipe.warmup_epochs, learning_rate=recipe.warmup_learning_rate), recipe.init_seed,
            recipe.warmup_dense)
        log(f"vision tower, facts named right: {tower['vision_warmup']}")
    warmed = time.perf_counter()
    copying = (("copy", recipe.copy_steps, recipe.copy_batch_size, recipe.copy_gap),
               ("copy_far", recipe.copy_far_steps, recipe.copy_far_batch_size, recipe.copy_far_gap))
    for phase, steps, batch, gap in copying:
        if steps:
            log(f"{steps} steps of learning to copy (0 to {gap} tokens between) ...")
            model = train(model, RepeatCollator(tokenizer, gap, recipe.seed), range(steps * batch), work / phase,
                          training.model_copy(update={"train_vision": False, "batch_size": batch,
                                                      "lr_scheduler": "constant"}),
                          StageConfig(epochs=1, learning_rate=recipe.copy_learning_rate), recipe.init_seed)
    rng = np.random.default_rng(recipe.seed)
    examples = examples_for(records, work / "videos", recipe.examples_per_clip, rng, recipe.layout_share,
                            recipe.reasoning_per_clip, recipe.hint_share)
    collator = VideoChatCollator(processor, frames.__getitem__)
    n_params = sum(p.numel() for p in model.parameters())
    language = training.model_copy(update={"train_vision": recipe.warmup_epochs == 0 and not recipe.vision_tower})
    log(f"training {n_params / 1e6:.1f}M parameters on {len(examples)} conversations for {recipe.epochs} epochs ...")
    model = train(model, collator, examples, work / "train", language,
                  StageConfig(epochs=recipe.epochs, learning_rate=recipe.learning_rate), recipe.init_seed)
    if recipe.drills:
        log(f"{recipe.drills} copy drills ...")
        drills = [copy_drill(sample_scenario(rng, f"drill{i}"), rng) for i in range(recipe.drills)]
        model = train(model, TextChatCollator(processor), drills, work / "drills",
                      language.model_copy(update={"batch_size": recipe.drill_batch_size}),
                      StageConfig(epochs=1, learning_rate=recipe.drill_learning_rate), recipe.init_seed)
    if recipe.refresh_share or recipe.refresh_quizzes:
        again = [examples[i] for i in sorted(rng.choice(len(examples), int(recipe.refresh_share * len(examples)),
                                                        replace=False))]
        for i, index in enumerate(rng.choice(len(records), recipe.refresh_quizzes)):
            record = records[int(index)]
            system, prompt, reply = reasoning_example(record, rng, hint_share=1.0)
            again.append(Example(f"{record.id}/again{i}", work / "videos" / f"{record.id}.mp4", prompt, reply, system))
        log(f"{len(again)} conversations again ({recipe.refresh_quizzes} of them new label-hinted quizzes) ...")
        model = train(model, collator, again, work / "refresh", language,
                      StageConfig(epochs=1, learning_rate=recipe.refresh_learning_rate), recipe.init_seed)
    trained = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    facts = {"recipe": asdict(recipe), "conversations_version": CONVERSATIONS, "parameters": n_params,
             "conversations": len(examples),
             "seconds": {"clips": round(made - started, 1), "vision_warmup": round(warmed - made, 1),
                         "training": round(trained - warmed, 1)},
             "final_loss": _final_loss(work / "train" / "train_log.jsonl"), **tower}
    for phase in ("copy", "copy_far", "drills", "refresh"):
        if (work / phase / "train_log.jsonl").exists():
            facts[f"{phase}_final_loss"] = _final_loss(work / phase / "train_log.jsonl")
    (out / "pretrain.json").write_text(json.dumps(facts, indent=2) + "\n")
    write_card(out)
    return facts


def take_tower(model, source: Path) -> dict:
    """Load `source`'s vision tower (and merger) into `model`; returns where it came from and how it was made."""
    weights = source / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{source}: no model.safetensors to take a vision tower from")
    visual = {k.removeprefix("visual."): v for k, v in load_file(weights).items() if k.startswith("visual.")}
    vision_tower(model)[0].load_state_dict(visual, strict=True)
    made = json.loads((source / "pretrain.json").read_text()) if (source / "pretrain.json").exists() else {}
    warmed_in = {}
    if made.get("vision_tower"):  # `source` took its tower too: how that tower was warmed up is told there
        warmed = made["vision_tower"]
        recipe, warmup, seconds = warmed.get("recipe", {}), warmed.get("vision_warmup"), warmed.get("warmup_seconds")
        warmed_in = {"warmed_in": warmed.get("warmed_in", warmed["from"])}
    else:
        recipe, warmup, seconds = made.get("recipe", {}), made.get("vision_warmup"), made.get("seconds", {}).get(
            "vision_warmup")
    return {"from": str(source), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "recipe": {k: v for k, v in recipe.items() if k in WARMUP_FIELDS}, "vision_warmup": warmup,
            "warmup_seconds": seconds, **warmed_in}


def _final_loss(log_path: Path) -> float | None:
    rows = read_jsonl(log_path)
    losses = [row["loss"] for row in rows if "loss" in row] or [row["train_loss"] for row in rows if "train_loss" in row]
    return round(float(np.mean(losses[-5:])), 4) if losses else None
