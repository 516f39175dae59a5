"""The shipped base model and the recipe that makes it."""

import hashlib
import json
import re

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from rbft.data.video import read_video
from rbft.modeling import SHIPPED_MODEL
from rbft.prompts import rationale_prompt
from rbft.basemodel.architecture import corpus
from rbft.basemodel.reasoning import copy_drill
from rbft.world.generate import Splits, generate_world, load_scenes, make_clip
from rbft.world.scenes import sample_scenario
from rbft.world.judge import named_scene, named_subject, reasoning_grounded
from rbft.basemodel.copying import RepeatCollator
from rbft.basemodel.recipe import DIMENSION_LAYOUT, SAMPLING, Recipe, close_up, examples_for, pretrain
from rbft.world.tasks import TASKS
from rbft.basemodel.warmup import FactsCollator, View, fact_ids, views


def _describe(model, processor, frames: list, prompt: str = "Describe the video.") -> list[str]:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    processor.tokenizer.padding_side = "left"
    batch = processor(text=[text] * len(frames), videos=frames, padding=True, return_tensors="pt",
                      videos_kwargs={"do_sample_frames": False})
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=40, do_sample=False)
    return processor.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_shipped_model_is_a_small_standard_folder():
    files = {p.name: p.stat().st_size for p in SHIPPED_MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json",
            "chat_template.jinja", "README.md"} <= set(files)
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert files["model.safetensors"] <= 30 * 2**20
    card = (SHIPPED_MODEL / "README.md").read_text()
    assert "How it was made" in card and "What it scores" in card


def test_shipped_model_loads_with_auto_classes_and_describes_world_clips(tmp_path):
    model = AutoModelForImageTextToText.from_pretrained(SHIPPED_MODEL)
    processor = AutoProcessor.from_pretrained(SHIPPED_MODEL)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    generate_world(tmp_path, seed=21, splits=Splits(0, 0, 8))
    scenes = load_scenes(tmp_path)
    clips = [read_video(tmp_path / "videos" / f"{i}.mp4", SAMPLING).frames for i in scenes]
    texts = _describe(model, processor, clips)
    # a description in the world's words: a subject and a scene it knows (how often they are the
    # right ones is measured by benchmarks/base_model.py and stated in the model card)
    assert all(named_subject(t) and named_scene(t) for t in texts), texts


SMALL = dict(clips=6, epochs=1, batch_size=3, copy_steps=2, copy_batch_size=4, copy_far_steps=2, copy_far_batch_size=4,
             drills=8, drill_batch_size=4, refresh_share=0.5, refresh_quizzes=3)


def test_shipped_model_writes_rationales_toward_the_label_it_is_told(tmp_path):
    # the demo's prompt states each clip's home-security label, words the model never saw in pretraining
    from rbft.data.cache import FrameCache
    from rbft.data.manifest import load_manifest
    from rbft.data.rationales import conclusion, rejection
    from rbft.generation import generate
    from rbft.modeling import load_for_videos
    from rbft.prompts import rationale_examples

    task = TASKS["home-security"]
    generate_world(tmp_path, seed=21, splits=Splits(0, 0, 12))
    records = load_manifest(tmp_path / "home-security.jsonl", task.labels)
    cache = FrameCache(tmp_path / "cache")
    model, collator = load_for_videos(SHIPPED_MODEL, lambda path: cache.load(path, SAMPLING).frames, "float32")
    texts = generate(model, collator, rationale_examples(task, records, hint=True), max_new_tokens=160, batch_size=12)
    labels = list(task.labels)
    kept = [t for t, r in zip(texts, records) if rejection(t, r.label, labels) is None
            and conclusion(t, labels) == r.label]
    # at least the share Stage I needs (`rationales.min_kept_share`, 0.5): benchmarks/base_model.py measures the
    # share on the demo's 160 clips, and the models made before the copy phase kept none
    assert len(kept) >= len(records) * 0.5, texts
    assert all(reasoning_grounded(t) for t in kept) and len({t.split("Reasoning:")[1] for t in kept}) >= len(kept) / 2


def test_pretraining_recipe_runs_end_to_end_at_small_scale(tmp_path):
    recipe = Recipe(**{**SMALL, "examples_per_clip": 1})
    facts = pretrain(tmp_path / "model", tmp_path / "work", recipe, log=lambda _: None)
    assert facts["conversations"] == 6 and facts["final_loss"] is not None
    assert facts["drills_final_loss"] is not None and facts["refresh_final_loss"] is not None
    assert facts["copy_final_loss"] is not None and facts["copy_far_final_loss"] is not None
    drills = [json.loads(line) for line in (tmp_path / "work" / "drills" / "train_log.jsonl").read_text().splitlines()]
    assert drills[-1]["step"] == 2  # 8 drills in batches of 4
    again = [json.loads(line) for line in (tmp_path / "work" / "refresh" / "train_log.jsonl").read_text().splitlines()]
    assert again[-1]["step"] == 2  # half of the 6 conversations and 3 new label-hinted quizzes, in batches of 3
    log = [json.loads(line) for line in (tmp_path / "work" / "train" / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in row or "train_loss" in row for row in log)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "model")
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    frames = read_video(next((tmp_path / "work" / "videos").iterdir()), SAMPLING).frames
    assert isinstance(_describe(model, processor, [frames])[0], str)
    assert "How it was made" in (tmp_path / "model" / "README.md").read_text()


def test_pretraining_can_warm_up_the_vision_tower_first_and_then_keeps_it(tmp_path):
    recipe = Recipe(**{**SMALL, "examples_per_clip": 1}, warmup_epochs=2, warmup_batch_size=12)
    facts = pretrain(tmp_path / "model", tmp_path / "work", recipe, log=lambda _: None)
    warm = facts["vision_warmup"]["train"]
    assert set(warm) == {"subject", "colour", "scene", "time", "action"} and all(0 <= v <= 1 for v in warm.values())
    log = [json.loads(line) for line in (tmp_path / "work" / "warmup" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 8  # 6 clips of 4 frame pairs, plain and mirrored: 48 views, batch 12, 2 epochs
    # the language phase leaves the warmed-up tower as it was
    last = max((tmp_path / "work" / "warmup" / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    warmed = {k.removeprefix("visual."): v for k, v in load_file(last / "model.safetensors").items()
              if k.startswith("visual.")}
    tower = AutoModelForImageTextToText.from_pretrained(tmp_path / "model").model.visual.state_dict()
    assert warmed.keys() == tower.keys() and all(torch.equal(warmed[k], tower[k]) for k in warmed)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "Vision warm-up" in card and "its colour, its action, the scene" in card
    assert f"and the action in {warm['action']:.0%}" in card  # too few clips to hold any out


def test_pretraining_can_take_another_models_vision_tower_and_keeps_it(tmp_path):
    recipe = Recipe(**{**SMALL, "examples_per_clip": 2}, vision_tower=str(SHIPPED_MODEL))
    facts = pretrain(tmp_path / "model", tmp_path / "work", recipe, log=lambda _: None)
    source = {k: v for k, v in load_file(SHIPPED_MODEL / "model.safetensors").items() if k.startswith("visual.")}
    made = load_file(tmp_path / "model" / "model.safetensors")
    assert all(torch.equal(made[k], v) for k, v in source.items())  # taken, then frozen through every phase
    assert any(not torch.equal(made[k], v) for k, v in load_file(SHIPPED_MODEL / "model.safetensors").items()
               if not k.startswith("visual.") and k in made and made[k].shape == v.shape)
    assert facts["vision_tower"]["sha256"] == hashlib.sha256((SHIPPED_MODEL / "model.safetensors").read_bytes()).hexdigest()
    card = (tmp_path / "model" / "README.md").read_text()
    assert "--vision-tower DIR" in card and facts["vision_tower"]["sha256"][:12] in card


def test_the_warm_up_sees_each_frame_pair_of_a_clip_plain_and_mirrored(tmp_path):
    records = [make_clip(3, i, f"c{i}")[0] for i in range(2)]
    frames = np.random.default_rng(0).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8)
    seen = views(records, tmp_path, {tmp_path / "c0.mp4": frames, tmp_path / "c1.mp4": frames})
    assert len(seen) == 16 and {(v.pair, v.mirrored) for v in seen if v.id == "c1"} == {
        (k, m) for k in range(4) for m in (False, True)}
    processor = AutoProcessor.from_pretrained(SHIPPED_MODEL)
    collator = FactsCollator(processor, lambda path: frames, {r.id: r for r in records})
    batch = collator([View("c0", tmp_path / "c0.mp4", 1), View("c1", tmp_path / "c1.mp4", 1, mirrored=True)])
    expected = processor.video_processor(videos=[frames[2:4], np.ascontiguousarray(frames[2:4, :, ::-1])],
                                         return_tensors="pt", do_sample_frames=False)
    assert torch.equal(batch["pixel_values_videos"], expected["pixel_values_videos"])
    assert batch["video_grid_thw"].tolist() == [[1, 8, 8], [1, 8, 8]]
    assert batch["labels"].tolist() == [fact_ids(records[0]), fact_ids(records[1])]


def test_some_pretraining_prompts_ask_for_the_rationale_layout_but_none_names_a_task(tmp_path):
    records = [make_clip(5, i, f"c{i}")[0] for i in range(40)]
    plain = examples_for(records, tmp_path, 2, np.random.default_rng(0))
    laid_out = examples_for(records, tmp_path, 2, np.random.default_rng(0), layout_share=1.0)
    assert not any("layout" in e.prompt for e in plain)
    asked = [e for e in laid_out if "Answer in this layout:" in e.prompt]
    # half of the four-dimension prompts (one per clip, more by chance) carry a question; all of those the layout
    assert 10 <= len(asked) <= 40 and all(e.prompt.endswith(DIMENSION_LAYOUT) for e in asked)
    assert all(e.target.startswith("Subjects: ") for e in asked)
    for task in TASKS.values():  # the layout's four lines, as a task's rationale prompt has them
        assert DIMENSION_LAYOUT in rationale_prompt(task)
    # but not its task lines: no options to conclude with, no label, no verdict asked for
    text = " ".join(e.prompt + " " + e.target for e in laid_out)
    assert "<" not in text and "Conclusion" not in text and "Reasoning" not in text


def test_no_pretraining_text_names_a_task_label_as_a_verdict_or_asks_a_task_question(tmp_path):
    rng = np.random.default_rng(0)
    records = [sample_scenario(rng, f"p{i}") for i in range(400)]
    examples = examples_for(records, tmp_path, 3, np.random.default_rng(1), 0.5, reasoning=1, hint_share=0.6)
    drills = [copy_drill(record, rng) for record in records]
    texts = [t for e in examples for t in (e.system or "", e.prompt, e.target)] + corpus(n_records=200)
    texts += [t for drill in drills for t in drill]
    quizzes = [e for e in examples if "Conclusion:" in e.target]
    assert len(quizzes) == 400  # one per clip, the rest are descriptions, knowledge, captions, ...
    names = {name for task in TASKS.values() for name in task.labels}
    # every word of every label too, except "no", "small" and "large", as in the captions' test
    words = {w for name in names for w in re.split(r"[_\s]", name)} - {"no", "small", "large"}
    verdicts = [v for t in texts for v in re.findall(r"<([^<>|]+)>", t)]  # options, stated verdicts, conclusions
    assert len(set(verdicts)) > 300 and not names.intersection(verdicts)
    assert not words.intersection(w for v in verdicts for w in re.split(r"[_\s]", v))
    home = set(TASKS["home-security"].labels)  # the demo's label words appear nowhere, not even as plain words
    assert not [t for t in texts if home.intersection(re.findall(r"[a-z]+", t.lower()))]
    for task in TASKS.values():
        assert not [t for t in texts if task.question in t or task.persona in t]
    # the verdict stated in a prompt is the one the reasoning and the conclusion name
    hinted = [e for e in quizzes if "The label of this video is" in e.prompt]
    assert 0.45 < len(hinted) / len(quizzes) < 0.75
    for e in hinted:
        stated, meaning = re.search(r"The label of this video is (<[^>]+>) \((.+?)\); it is given", e.prompt).groups()
        assert e.target.endswith(f"Conclusion: {stated}") and f"So the label is {stated}.\n" in e.target
        assert meaning not in e.target  # the reasoning names the verdict, not the meaning the model would recall
        assert re.findall(r"<[^<>|]+>", e.prompt) == [stated, stated]  # and no other verdict is in the prompt
    for _, prompt, answer in drills:
        stated = re.search(r"The label of this video is (<[^>]+>)", prompt).group(1)
        assert re.findall(r"<[^<>|]+>", prompt + answer) == [stated] * 4


def test_copy_sequences_repeat_random_tokens_after_a_gap_with_the_loss_on_the_repeat_alone():
    from rbft.basemodel.architecture import build_processor, train_tokenizer

    tokenizer = build_processor(train_tokenizer(corpus(n_records=200))).tokenizer
    collator = RepeatCollator(tokenizer, gap=50, seed=3)
    gaps = set()
    for first in range(0, 640, 64):
        items = list(range(first, first + 64))
        batch = collator(items)
        assert torch.equal(batch["input_ids"], collator(items)["input_ids"])  # fixed by (seed, items)
        gaps |= check_repeats(batch)
    assert len(gaps) >= 8 and max(gaps) <= 50  # one gap per batch, so a batch has little padding
    used = set(batch["input_ids"][batch["attention_mask"].bool()].tolist())
    assert len(used) > 300 and not set(tokenizer.all_special_ids).intersection(used)
    # no token is, or holds, a task's label word (the tokenizer never saw them whole: they encode as pieces)
    words = {name for task in TASKS.values() for name in task.labels if len(name) >= 3}
    assert not [t for t in tokenizer.convert_ids_to_tokens(sorted(used)) if any(w in t.lower() for w in words)]


def check_repeats(batch) -> set[int]:
    """Each row ends with a repeat of 4 to 12 tokens seen earlier, the loss on it alone; returns the gaps."""
    gaps = set()
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        tokens = ids[mask.bool()].tolist()
        taught = (labels != -100).nonzero().flatten().tolist()
        assert taught == list(range(taught[0], len(tokens)))  # the end of the row, up to its padding
        repeat = tokens[taught[0] - 1:]  # with its first token, which has no loss
        assert 6 <= len(repeat) <= 16 and labels[taught[0]:len(tokens)].tolist() == repeat[1:]
        before = tokens[:taught[0] - 1]
        starts = [i for i in range(len(before) - len(repeat) + 1) if before[i:i + len(repeat)] == repeat]
        assert starts and starts[0] <= 20
        gaps.add(len(before) - starts[0] - len(repeat))
    return gaps


def test_close_ups_move_the_records_boxes_with_the_picture():
    record, frames = make_clip(3, 0, "x")
    marked = np.zeros_like(frames)
    for i, box in enumerate(record.main.boxes):
        if box is not None:
            marked[i, box[1]:box[3], box[0]:box[2]] = 255
    zoomed = close_up(marked, record, 2.0)
    for frame, box in zip(zoomed, record.main.boxes):
        ys, xs = np.nonzero(frame.max(-1) > 127)
        if box is None:
            assert len(xs) == 0
        elif box[2] - box[0] >= 4 and box[3] - box[1] >= 4:  # the same box, give or take the resampling's pixel
            assert np.abs(np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) - box).max() <= 1, box


def test_shipped_tokenizer_encodes_any_text_and_knows_the_vision_tokens():
    processor = AutoProcessor.from_pretrained(SHIPPED_MODEL)
    text = "Smart Home Security Expert: naïve 日本語 <abnormal>\ttabs"
    assert processor.tokenizer.decode(processor.tokenizer(text)["input_ids"]) == text
    config = json.loads((SHIPPED_MODEL / "config.json").read_text())
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == config["video_token_id"]
