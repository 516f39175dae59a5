"""The shipped base model and the recipe that makes it."""

import json

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from rbft.data.video import read_video
from rbft.modeling import SHIPPED_MODEL
from rbft.prompts import rationale_prompt
from rbft.world.generate import Splits, generate_world, load_scenes, make_clip
from rbft.world.judge import named_scene, named_subject
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


def test_pretraining_recipe_runs_end_to_end_at_small_scale(tmp_path):
    recipe = Recipe(clips=6, examples_per_clip=1, epochs=1, batch_size=3)
    facts = pretrain(tmp_path / "model", tmp_path / "work", recipe, log=lambda _: None)
    assert facts["conversations"] == 6 and facts["final_loss"] is not None
    log = [json.loads(line) for line in (tmp_path / "work" / "train" / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in row or "train_loss" in row for row in log)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "model")
    processor = AutoProcessor.from_pretrained(tmp_path / "model")
    frames = read_video(next((tmp_path / "work" / "videos").iterdir()), SAMPLING).frames
    assert isinstance(_describe(model, processor, [frames])[0], str)
    assert "How it was made" in (tmp_path / "model" / "README.md").read_text()


def test_pretraining_can_warm_up_the_vision_tower_first_and_then_keeps_it(tmp_path):
    recipe = Recipe(clips=6, examples_per_clip=1, epochs=1, batch_size=3, warmup_epochs=2, warmup_batch_size=12)
    facts = pretrain(tmp_path / "model", tmp_path / "work", recipe, log=lambda _: None)
    warm = facts["vision_warmup"]["train"]
    assert set(warm) == {"subject", "colour", "scene", "time"} and all(0 <= v <= 1 for v in warm.values())
    log = [json.loads(line) for line in (tmp_path / "work" / "warmup" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 8  # 6 clips of 4 frame pairs, plain and mirrored: 48 views, batch 12, 2 epochs
    # the language phase leaves the warmed-up tower as it was
    last = max((tmp_path / "work" / "warmup" / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    warmed = {k.removeprefix("visual."): v for k, v in load_file(last / "model.safetensors").items()
              if k.startswith("visual.")}
    tower = AutoModelForImageTextToText.from_pretrained(tmp_path / "model").model.visual.state_dict()
    assert warmed.keys() == tower.keys() and all(torch.equal(warmed[k], tower[k]) for k in warmed)
    assert "Vision warm-up" in (tmp_path / "model" / "README.md").read_text()


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
