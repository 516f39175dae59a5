"""The shipped base model's card (README.md): how it was made, from its `pretrain.json`, and what it scores."""

from __future__ import annotations

import json
from pathlib import Path


def write_card(model_dir: str | Path, scores: dict | None = None) -> Path:
    """The model card: how the model was made (from `pretrain.json`) and, when given, what it scores."""
    model_dir = Path(model_dir)
    facts = json.loads((model_dir / "pretrain.json").read_text())
    if scores is not None:
        facts["scores"] = scores
        (model_dir / "pretrain.json").write_text(json.dumps(facts, indent=2) + "\n")
    recipe = facts["recipe"]
    warmed = []  # the vision warm-up's line, when the recipe had one
    if recipe.get("warmup_epochs"):
        warm = facts["vision_warmup"]
        seen = warm.get("held_out", warm["train"])
        measured = f"{'held-out' if 'held_out' in warm else 'its'} pretraining clips"
        how = "epochs "
        if "warmup_batch_size" in recipe:  # older recipes (no such field) warmed up on whole clips
            how = (f"epochs over every frame pair (temporal patch) of the clips, plain and mirrored, in batches of "
                   f"{recipe['warmup_batch_size']} at a learning rate of {recipe['warmup_learning_rate']}, ")
            measured = f"the frame pairs of {measured}"
        warmed = [
            f"- Vision warm-up: before the language training, the vision tower trained {recipe['warmup_epochs']:g} "
            f"{how}as a classifier of the main subject, its colour, the scene and the time of day (heads on its "
            "max-pooled and on each of its tokens, dropped afterwards), then stayed frozen; it named the subject "
            f"right in {seen['subject']:.0%} of {measured} ({facts['seconds']['vision_warmup'] / 60:.1f} minutes)."]
    laid_out = ""  # older recipes (no such field) never asked for the layout
    if recipe.get("layout_share"):
        laid_out = (f"; {recipe['layout_share']:.0%} of the four-dimension prompts with a question also ask for "
                    "the dimensions in rbft's rationale layout")
    lines = [
        "---", "license: apache-2.0", "library_name: transformers", "pipeline_tag: image-text-to-text", "---", "",
        "# rbft-world-base", "",
        "A tiny Qwen2-VL (`Qwen2VLForConditionalGeneration`) that rbft pretrains on its synthetic smart-home world "
        "and ships as the base model of `rbft demo`. It describes world clips (subjects, attributes, actions, "
        "scenes) and has never seen a task label: the starting point of RB-FT's rationale gap.", "",
        "## How it was made", "",
        f"- Architecture: Qwen2-VL at toy scale, {facts['parameters'] / 1e6:.1f}M parameters; vision tower of 4 "
        "layers (width 192), 16-pixel patches, pairs of frames, no spatial merge (8x8 tokens per frame pair at "
        "128x128); language model of 4 layers (width 256).",
        "- Tokenizer: byte-level BPE with Qwen2's pre-tokenization, trained offline on the world's caption corpus "
        "(any text still encodes, byte by byte).",
        f"- Data: {recipe['clips']} world clips drawn with seed {recipe['seed']} (never the task splits' seeds), "
        f"8 frames each ({recipe.get('zoom_share', 0):.0%} of them as close-ups of the main subject), "
        f"{facts['conversations']} conversations of a generic prompt (describe along four dimensions, "
        f"caption, who, where, what action, day or night{laid_out}) and the answer written from the clip's scene "
        "record.",
        f"- Training: from random weights, full training{' of the language model' if warmed else ''} "
        "through `rbft.training` (Hugging Face Trainer), "
        f"{recipe['epochs']} epochs, batch {recipe['batch_size']}, AdamW at {recipe['learning_rate']} with cosine "
        f"schedule and {recipe['warmup_ratio']:.0%} warmup, weight decay {recipe['weight_decay']}; final loss "
        f"{facts['final_loss']}; {facts['seconds']['training'] / 60:.1f} minutes of training on a 2-core CPU.",
        *warmed,
        f"- Remake it: `rbft world pretrain --out DIR"
        f"{' --vision-warmup %g' % recipe['warmup_epochs'] if warmed else ''}` (the recipe is "
        "`rbft.basemodel.recipe.Recipe`).", "",
    ]
    if "scores" in facts:
        s = facts["scores"]
        lines += [
            "## What it scores", "",
            f"Measured by `benchmarks/base_model.py` on {s['n']} held-out world clips with the `home-security` "
            "rationale-style prompt:", "",
            "| figure | value |", "| --- | --- |",
            f"| main subject named right | {s['subject_accuracy']:.3f} |",
            f"| scene named right | {s['scene_accuracy']:.3f} |",
            f"| main action named right | {s['action_accuracy']:.3f} |",
            f"| home-security macro-F1, zero-shot (label scoring) | {s['zero_shot_macro_f1']:.3f} |",
            f"| home-security macro-F1 after a {s['finetune_epochs']:g}-epoch fine-tune on {s['train_clips']} "
            f"labelled clips | {s['finetuned_macro_f1']:.3f} |", "",
        ]
        short = [name for name in ("subject", "scene") if s[f"{name}_accuracy"] < 0.8]
        if short:
            lines += [f"Below rbft's goal of 0.8 for naming the main {' and the '.join(short)}: where its rationales "
                      f"name the wrong {short[0]}, they describe it in the same confident words as a right one.", ""]
    lines += [
        "## Use and limits", "",
        "For rbft's demo, tests and tutorials only: it knows nothing outside the synthetic world. Load it with "
        "`AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`, or as "
        "`rbft-world-base` in an rbft config.", "",
    ]
    card = model_dir / "README.md"
    card.write_text("\n".join(lines))
    return card
