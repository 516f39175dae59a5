"""The shipped base model's card (README.md): how it was made, from its `pretrain.json`, and what it scores."""

from __future__ import annotations

import json
from pathlib import Path


def _knowing(recipe: dict) -> str:
    return "; what one should know about the situation" if recipe.get("reasoning_per_clip") else ""


def _reasoning(recipe: dict, version: int) -> list[str]:
    """The card's lines on what the reasoning pretraining holds, and why none of it is a task's label."""
    if not recipe.get("reasoning_per_clip"):
        return []
    # the reasoning line's end: from the conversations' version 2 on, the verdict alone (`rbft.basemodel.reasoning`)
    verdict = "the verdict, as the prompt names it" if version >= 2 else "how it fits the verdict's meaning"
    return [
        "- Knowledge: one sentence of general knowledge per subject, action, scene, time of day and clothing "
        "(`rbft.world.knowledge`: a bear near a house can hurt people, a fall can injure a person, a pool can "
        "drown a small child, a raised hood hides a face, ...), written about the situations, apart from the "
        "tasks: no task's label, question or rule.",
        f"- Reasoning: {min(recipe['reasoning_per_clip'], recipe['examples_per_clip'] - 1)} conversation(s) per "
        "clip are a made-up quiz in rbft's "
        "rationale prompt (`rbft.basemodel.reasoning`): a question about a general property of the situation "
        "(could anyone get hurt, is someone arriving, can one tell what the subject wants, is anything damaged, "
        "does someone need help, person, animal or vehicle, indoors, in the dark), its answers as verdict "
        f"words drawn afresh for each conversation, the verdict stated with its meaning in {recipe['hint_share']:.0%} "
        "of them; the answer is the four-dimension description, a reasoning line (what the main subject does "
        f"where, the fact that decides the quiz, {verdict}) and `Conclusion: <verdict>`. "
        "Verdict words are synonyms of the answer, random words or made-up ones (random letters, or pieces cut from pretraining words: `<beaormick>`), never a task's "
        "label nor with one of its words as a part (the common `no`, `small` and `large` aside; a test checks "
        "the conversations, the drills and the tokenizer's corpus, and that `normal`, `abnormal` and `vague` "
        "appear nowhere), so the model learns to reason toward whatever verdict a prompt names; the tokenizer's "
        "corpus holds no task's wording either.",
    ]


def _copying(recipe: dict, facts: dict) -> str:
    """The training line's head: the copy phase before any conversation, when the recipe has one."""
    if not recipe.get("copy_steps"):
        return ""
    far = ""
    if recipe.get("copy_far_steps"):
        far = (f", then {recipe['copy_far_steps']} steps with 0 to {recipe['copy_far_gap']} random tokens between "
               f"(batch {recipe['copy_far_batch_size']}; final loss {facts.get('copy_far_final_loss')})")
    return (f"first {recipe['copy_steps']} steps of learning to copy with no video and no words: random token "
            "sequences (6 to 16 of the tokenizer's tokens, none holding a task's label word) each repeated on the "
            f"next line, the loss on the repeat (batch {recipe['copy_batch_size']}, constant "
            f"{recipe['copy_learning_rate']}; final loss {facts.get('copy_final_loss')}){far}; without it the "
            "model never carried a verdict stated in the prompt into its answer; then ")


def _after(recipe: dict, facts: dict) -> str:
    """The training line's tail: the copy drills and the conversations again, when the recipe has them."""
    text = ""
    if recipe.get("drills"):
        text += (f"; then {recipe['drills']} copy drills without a video (a clip told in words, a made-up quiz with "
                 f"its verdict stated, the answer naming it; batch {recipe['drill_batch_size']}, "
                 f"{recipe['drill_learning_rate']}; final loss {facts.get('drills_final_loss')})")
    if recipe.get("refresh_share") or recipe.get("refresh_quizzes"):
        quizzes = f" with {recipe['refresh_quizzes']} new label-hinted quizzes" if recipe.get("refresh_quizzes") else ""
        text += (f"; then {recipe.get('refresh_share', 0):.0%} of the conversations again{quizzes} at "
                 f"{recipe['refresh_learning_rate']} (final loss {facts.get('refresh_final_loss')})")
    return text


def write_card(model_dir: str | Path, scores: dict | None = None) -> Path:
    """The model card: how the model was made (from `pretrain.json`) and, when given, what it scores."""
    model_dir = Path(model_dir)
    facts = json.loads((model_dir / "pretrain.json").read_text())
    if scores is not None:
        facts["scores"] = scores
        (model_dir / "pretrain.json").write_text(json.dumps(facts, indent=2) + "\n")
    recipe = facts["recipe"]
    warmed = []  # the vision warm-up's line, when the recipe had one
    taken = facts.get("vision_tower")  # or the tower it took from another model, warmed up there
    if recipe.get("warmup_epochs") and (taken is None or taken.get("vision_warmup")):
        warm = taken["vision_warmup"] if taken else facts["vision_warmup"]
        made = {**recipe, **taken["recipe"]} if taken else recipe
        minutes = (taken["warmup_seconds"] if taken else facts["seconds"]["vision_warmup"]) / 60
        seen = warm.get("held_out", warm["train"])
        measured = f"{'held-out' if 'held_out' in warm else 'its'} pretraining clips"
        how = "epochs "
        if "warmup_batch_size" in made:  # older recipes (no such field) warmed up on whole clips
            how = (f"epochs over every frame pair (temporal patch) of the clips, plain and mirrored, in batches of "
                   f"{made['warmup_batch_size']} at a learning rate of {made['warmup_learning_rate']}, ")
            measured = f"the frame pairs of {measured}"
        origin = ""
        if taken:
            warmer = (f"which had it from `{Path(taken['warmed_in']).name}`, where it was warmed up"
                      if taken.get("warmed_in") else "which warmed it up")
            origin = (f" This model took that tower, as it was, from `{Path(taken['from']).name}` (model.safetensors "
                      f"sha256 {taken['sha256'][:12]}), {warmer}: as real VLMs start from a pretrained "
                      "vision encoder, the recipe can start from a warmed-up tower (`rbft world pretrain "
                      "--vision-tower DIR`) or warm one up again.")
        # towers warmed up before the action was one of the facts name no action
        action, action_seen = ("", "")
        if "action" in seen:
            action, action_seen = "its action, ", f" and the action in {seen['action']:.0%}"
        warmed = [
            f"- Vision warm-up: before the language training, the vision tower trained {made['warmup_epochs']:g} "
            f"{how}as a classifier of the main subject, its colour, {action}the scene and the time of day (heads on "
            "its max-pooled and on each of its tokens, dropped afterwards), then stayed frozen; it named the subject "
            f"right in {seen['subject']:.0%} of {measured}{action_seen} ({minutes:.1f} minutes).{origin}"]
    laid_out = ""  # older recipes (no such field) never asked for the layout
    if recipe.get("layout_share"):
        laid_out = (f"; {recipe['layout_share']:.0%} of the four-dimension prompts with a question also ask for "
                    "the dimensions in rbft's rationale layout")
    lines = [
        "---", "license: apache-2.0", "library_name: transformers", "pipeline_tag: image-text-to-text", "---", "",
        "# rbft-world-base", "",
        "A tiny Qwen2-VL (`Qwen2VLForConditionalGeneration`) that rbft pretrains on its synthetic smart-home world "
        "and ships as the base model of `rbft demo`. It describes world clips (subjects, attributes, actions, "
        "scenes), knows what is dangerous, routine or unclear about them, and, told a verdict and what it means, "
        "writes the reasoning toward it; it has never seen a task's label: the starting point of RB-FT's "
        "rationale gap.", "",
        "## How it was made", "",
        f"- Architecture: Qwen2-VL at toy scale, {facts['parameters'] / 1e6:.1f}M parameters; vision tower of 4 "
        "layers (width 192), 16-pixel patches, pairs of frames, no spatial merge (8x8 tokens per frame pair at "
        "128x128); language model of 4 layers (width 256).",
        "- Tokenizer: byte-level BPE with Qwen2's pre-tokenization, trained offline on the pretraining's text "
        "(any text still encodes, byte by byte).",
        f"- Data: {recipe['clips']} world clips drawn with seed {recipe['seed']} (never the task splits' seeds), "
        f"8 frames each ({recipe.get('zoom_share', 0):.0%} of them as close-ups of the main subject), "
        f"{facts['conversations']} conversations of a generic prompt (describe along four dimensions, "
        f"caption, who, where, what action, day or night{laid_out}{_knowing(recipe)}) and the answer written "
        "from the clip's scene record.",
        *_reasoning(recipe, facts.get("conversations_version", 1)),
        f"- Training: from random weights, full training{' of the language model' if warmed or taken else ''} "
        f"through `rbft.training` (Hugging Face Trainer), {_copying(recipe, facts)}"
        f"{recipe['epochs']} epochs of the conversations, batch {recipe['batch_size']}, AdamW at "
        f"{recipe['learning_rate']} with cosine "
        f"schedule and {recipe['warmup_ratio']:.0%} warmup, weight decay {recipe['weight_decay']}; final loss "
        f"{facts['final_loss']}{_after(recipe, facts)}; {facts['seconds']['training'] / 60:.1f} minutes of "
        "training on a 2-core CPU.",
        *warmed,
        f"- Remake it: `rbft world pretrain --out DIR"
        f"{' --vision-tower DIR' if taken else ' --vision-warmup %g' % recipe['warmup_epochs'] if warmed else ''}` "
        "(the recipe is `rbft.basemodel.recipe.Recipe`).", "",
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
        if "rationales" in s:
            r = s["rationales"]
            lines += [
                f"Its label-hinted rationales for the demo's {r['clips']} training clips (the prompt states each "
                "clip's `home-security` label and its meaning, words it never saw in pretraining):", "",
                "| figure | value |", "| --- | --- |",
                f"| keep every line of the layout and conclude with the stated label | {r['layout']:.3f} |",
                f"| distinct reasoning lines | {r['distinct_reasoning']} |",
                f"| reasoning names the subject or action of its own description | {r['grounded']:.3f} |",
                f"| label-free prompt: conclusion is the true label (zero-shot with reasoning) | "
                f"{r['label_free_accuracy']:.3f} |", "",
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
