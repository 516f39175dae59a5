"""The synthetic world: reproducible, grounded in its records, and free of task labels in its captions."""

import json
import re

import numpy as np
import pytest

from rbft.data.annotations import boxes_at, read_boxes, scene_rationales_file
from rbft.data.manifest import load_manifest
from rbft.data.video import FrameSampling, read_video
from rbft.stages.rationales import read_rationale_file
from rbft.world.captions import PROMPTS, answer, caption, structured
from rbft.world.generate import Splits, generate_world, has_ground_truth, make_clip, write_ground_truth
from rbft.world.judge import judge, named_scene, named_subject
from rbft.world.render import FPS, FRAMES, SIZE
from rbft.world.scenes import ACTIONS, SCENES, SUBJECTS, sample_scenario, scene_record
from rbft.world.tasks import TASKS, label


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate_world(out, seed=3, splits=Splits(12, 4, 8))
    return out


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = tmp_path / "again"
    generate_world(again, seed=3, splits=Splits(12, 4, 8))
    assert _files(world) == _files(again)
    other = tmp_path / "other"
    generate_world(other, seed=4, splits=Splits(12, 4, 8))
    assert (other / "scenes.jsonl").read_bytes() != (world / "scenes.jsonl").read_bytes()


def test_manifests_load_with_their_tasks_and_videos_decode(world):
    for name, task in TASKS.items():
        records = load_manifest(world / f"{name}.jsonl", task.labels)
        assert [r.split for r in records].count("train") == 12 and len(records) == 24
    clip = read_video(world / "videos" / "clip_00000.mp4", FrameSampling(num_frames=8))
    assert clip.frames.shape == (8, SIZE, SIZE, 3) and clip.info.frame_count == FRAMES


def test_the_world_writes_what_it_knows_beside_its_manifests_for_the_stages(world):
    """Each task's ground-truth rationales and every clip's boxes, in `rbft.data.annotations`' files."""
    scenes = {row["id"]: row for row in map(json.loads, (world / "scenes.jsonl").read_text().splitlines())}
    boxes = read_boxes(world / "home-security.jsonl")
    assert set(boxes) == set(scenes)
    for clip, row in scenes.items():
        frames = boxes[clip]["frames"]
        assert boxes[clip]["fps"] == FPS and boxes[clip]["size"] == [SIZE, SIZE] and len(frames) == FRAMES
        for i, shown in enumerate(frames):  # every subject, and the package and the trash can, where in view
            tracks = [s["boxes"] for s in row["subjects"]] + [row["objects"][o] for o in ("package", "trash can")
                                                               if o in row["objects"]]
            assert shown == [t[i] for t in tracks if t[i] is not None]
    for name, task in TASKS.items():
        given = read_rationale_file(scene_rationales_file(world / f"{name}.jsonl", name))
        for record in load_manifest(world / f"{name}.jsonl", task.labels):
            text, writer = given[record.id]
            assert writer == "scene-record" and text.endswith(f"Conclusion: <{record.label}>")
            assert text.startswith(structured(scene_record(scenes[record.id])))
    # a world drawn before rbft wrote these gets them, the same, from its scene records
    written = {p: p.read_bytes() for p in world.glob("*") if p.name.endswith(("boxes.jsonl", "rationales.jsonl"))}
    assert len(written) == 1 + len(TASKS) and has_ground_truth(world)
    for path in written:
        path.unlink()
    assert not has_ground_truth(world)
    write_ground_truth(world)
    assert {p: p.read_bytes() for p in written} == written


def test_boxes_follow_the_sampled_frames_times_and_size():
    row = {"fps": 4.0, "size": [100, 50], "frames": [[[0, 0, 10, 10]], [], [[20, 10, 60, 50], [0, 0, 1, 1]]]}
    assert boxes_at(row, [0.0, 0.25, 0.5, 0.9], (200, 50)) == [[[0, 0, 20, 10]], [], [[40, 10, 120, 50], [0, 0, 2, 1]], []]


def test_records_hold_a_box_per_frame_for_every_subject_and_key_object(world):
    rows = [json.loads(line) for line in (world / "scenes.jsonl").read_text().splitlines()]
    assert len(rows) == 24
    for row in rows:
        assert row["scene"] in SCENES and row["time"] in ("day", "night")
        for subject in row["subjects"]:
            assert subject["kind"] in SUBJECTS and subject["action"] in ACTIONS
            assert len(subject["boxes"]) == FRAMES
            seen = [b for b in subject["boxes"] if b is not None]
            assert len(seen) >= FRAMES // 2, subject
            assert all(0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE for x0, y0, x1, y1 in seen)
        for boxes in row["objects"].values():
            assert len(boxes) == FRAMES


@pytest.mark.parametrize("kind", ["adult", "elderly person", "child", "courier", "dog", "cat", "bear", "raccoon"])
def test_frames_match_the_boxes(kind):
    """Pixels inside the main subject's box change when it moves; the background outside stays put.

    Every pixel of a sprite counts (an elderly person's walking stick once fell outside its box).
    """
    record, frames = _first_clip(5, lambda r: r.main.kind == kind and r.main.action == "walking past"
                                 and r.time == "day")
    first, last = record.main.boxes[0], record.main.boxes[-1]
    assert first != last
    # a pixel that differs between the first and the last frame shows a subject in one of them
    mask = np.ones((SIZE, SIZE), bool)
    moving = [b for s in record.subjects for b in (s.boxes[0], s.boxes[-1])] + record.objects.get("pool", [])
    for box in moving:  # the pool's water ripples move too
        if box:
            mask[box[1]:box[3], box[0]:box[2]] = False
    diff = np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum(-1)
    assert not diff[mask].any() and diff[~mask].mean() > 1.0


PEOPLE = ("adult", "courier", "elderly person")


@pytest.mark.parametrize("action, kinds, check", [
    ("leaving a package", PEOPLE, lambda r: r.objects["package"][0] is None and r.objects["package"][-1] is not None),
    ("taking a package", PEOPLE, lambda r: r.objects["package"][0] is not None and r.objects["package"][-1] is None),
    ("knocking over a trash can", ("bear", "raccoon", "dog"),
     lambda r: r.objects["trash can"][0] != r.objects["trash can"][-1]),
    ("falling down", PEOPLE, lambda r: _aspect(r.main.boxes[0]) > 1.2 > _aspect(r.main.boxes[-1])),
    ("climbing a fence", PEOPLE, lambda r: r.main.boxes[-1][3] < r.main.boxes[0][3] - 20),
])
def test_actions_unfold_over_time(action, kinds, check):
    """An action is a change between frames, not something one frame shows."""
    record, _ = _first_clip(7, lambda r: r.main.action == action and r.main.kind in kinds)
    assert check(record), record.to_json()


def _first_clip(seed: int, wanted):
    """The record and frames of the first clip of world `seed` whose scenario is `wanted`."""
    for index in range(3000):
        if wanted(sample_scenario(np.random.default_rng([seed, index]), "x")):
            return make_clip(seed, index, "x")
    pytest.fail("no such clip in the first 3000")


def _aspect(box):
    return (box[3] - box[1]) / (box[2] - box[0])


def test_captions_describe_four_dimensions_and_never_name_a_label():
    labels = {name for task in TASKS.values() for name in task.labels}
    # every word of every label, except sizes ("small", "large"), which are honest attributes
    words = {w for name in labels for w in re.split(r"[_\s]", name)} - {"no", "small", "large"}
    assert words == {"normal", "abnormal", "vague", "pet", "wildlife", "animal"}
    rng = np.random.default_rng(0)
    for i in range(400):
        record = sample_scenario(rng, f"c{i}")
        text = structured(record)
        assert [line.split(":")[0] for line in text.splitlines()] == ["Subjects", "Attributes", "Actions", "Scene"]
        assert judge(text, {"subjects": [{"kind": record.main.kind, "action": record.main.action}],
                            "scene": record.scene}) == {"subject": True, "scene": True, "action": True}
        everything = " ".join([text, caption(record, rng)] + [answer(record, k, rng) for k in PROMPTS]).lower()
        assert not words & set(re.findall(r"[a-z]+", everything)), everything


def test_home_security_is_imbalanced_with_rare_subtypes():
    counts, subtypes = {}, {}
    for i in range(3000):
        record = sample_scenario(np.random.default_rng([11, i]), "x")
        name, subtype = label("home-security", record)
        counts[name] = counts.get(name, 0) + 1
        subtypes[subtype] = subtypes.get(subtype, 0) + 1
    assert counts["normal"] > counts["abnormal"] > counts["vague"] > 0
    assert counts["normal"] / 3000 < 0.8
    for rare in ("fall", "child_danger", "intrusion", "theft"):
        assert 0 < subtypes[rare] < 0.05 * counts["abnormal"] * 10
    pets = {label("wildlife-and-pets", sample_scenario(np.random.default_rng([12, i]), "x"))[0] for i in range(500)}
    assert pets == set(TASKS["wildlife-and-pets"].labels)


def test_judge_reads_subjects_and_scenes():
    assert named_subject("An elderly person walks past; an adult lingers.") == "elderly person"
    assert named_subject("Subjects: a raccoon and a dog.") == "raccoon"
    assert named_scene("Scene: by the pool at night.") == "pool side"
    assert named_scene("in the living room") == "living room"
    assert named_subject("nothing here") is None
