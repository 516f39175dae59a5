"""Manifests (JSONL and CSV): parsing, path resolution, and every problem reported with its line."""

import json

import pytest

from rbft.data.manifest import VideoRecord, limit_train, load_manifest, records_from_folder
from rbft.errors import ManifestError

LABELS = ["normal", "abnormal", "vague"]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def problems(path, labels=LABELS):
    with pytest.raises(ManifestError) as info:
        load_manifest(path, labels)
    assert str(path) in str(info.value)
    return info.value.problems


def test_jsonl_resolves_paths_against_the_manifest_folder(tmp_path):
    sub = tmp_path / "data"
    sub.mkdir()
    m = write_jsonl(sub / "m.jsonl", [
        {"id": "a", "video": "videos/a.mp4", "label": "normal", "split": "train", "meta": {"camera": 2}},
        {"video": "/abs/b clip.mp4", "label": "vague", "split": "val"},
        {"video": "c.mp4", "split": "test"},  # test videos may omit the label
    ])
    records = load_manifest(m, LABELS)
    assert [r.id for r in records] == ["a", "b clip", "c"]  # id defaults to the file stem
    assert records[0].video == sub / "videos" / "a.mp4"
    assert str(records[1].video) == "/abs/b clip.mp4"
    assert records[0].meta == {"camera": 2} and records[2].label is None
    assert [r.line for r in records] == [1, 2, 3]


def test_csv_with_the_same_columns(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text('id,video,label,split,meta\na,a.mp4,normal,train,"{""cam"": 1}"\n,b.mp4,abnormal,test,\n', encoding="utf-8")
    records = load_manifest(m, LABELS)
    assert [(r.id, r.label, r.split) for r in records] == [("a", "normal", "train"), ("b", "abnormal", "test")]
    assert records[0].meta == {"cam": 1} and records[0].video == tmp_path / "a.mp4"


def test_every_problem_is_reported_with_its_line(tmp_path):
    m = write_jsonl(tmp_path / "m.jsonl", [
        {"id": "a", "video": "a.mp4", "label": "normal"},
        {"id": "a", "video": "b.mp4", "label": "normal"},
        {"video": "c.mp4", "label": "burglary"},
        {"video": "d.mp4", "label": "normal", "split": "training"},
        '{"video": "e.mp4", "label": ',
        {"label": "normal"},
        {"video": "g.mp4", "split": "train"},
        {"video": "h.mp4", "label": "normal", "colour": "red"},
        "[1, 2]",
    ])
    found = problems(m)
    expected = [
        ("line 2", "duplicate id 'a' (first on line 1)"),
        ("line 3", "label 'burglary' is not one of the task's labels"),
        ("line 4", "split 'training' is not one of train, val, test"),
        ("line 5", "not valid JSON"),
        ("line 6", "missing 'video'"),
        ("line 7", "a train video needs a label"),
        ("line 8", "unknown field(s) colour"),
        ("line 9", "expected a JSON object"),
    ]
    assert len(found) == len(expected)
    for (line, text), problem in zip(expected, found):
        assert problem.startswith(line + ":") and text in problem, problem


def test_csv_problems_carry_line_numbers(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("id,video,label,split\na,a.mp4,normal,train\nb,b.mp4,unknown,train\n", encoding="utf-8")
    assert problems(m) == ["line 3: label 'unknown' is not one of the task's labels (normal, abnormal, vague)"]
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("path,class\na.mp4,normal\n", encoding="utf-8")
    assert "header" in problems(bad_header)[0]


def test_without_a_task_any_label_is_accepted(tmp_path):
    m = write_jsonl(tmp_path / "m.jsonl", [{"video": "a.mp4", "label": "anything"}])
    assert load_manifest(m)[0].label == "anything"


def test_missing_and_empty_manifests(tmp_path):
    assert problems(tmp_path / "none.jsonl") == ["file not found"]
    (tmp_path / "empty.jsonl").write_text("\n")
    assert problems(tmp_path / "empty.jsonl") == ["no videos listed"]


def test_a_folder_of_videos(tmp_path):
    (tmp_path / "cam 1").mkdir()
    for name in ("cam 1/a.mp4", "b.MOV", "notes.txt", ".hidden.mp4"):
        (tmp_path / name).write_bytes(b"x")
    assert [r.id for r in records_from_folder(tmp_path)] == ["b.MOV", "cam 1/a.mp4"]


def test_train_limit_keeps_each_labels_share_and_exactly_n():
    counts = {"normal": 20, "abnormal": 3, "vague": 1}
    train = [VideoRecord(f"{label}{i}", None, label, "train") for label, n in counts.items() for i in range(n)]
    for limit in (3, 12, 20, 23):
        kept = limit_train(train, limit)
        assert len(kept) == limit and {r.label for r in kept} == set(counts)  # every label stays
        assert kept == [r for r in train if r in kept]  # manifest order, first ones first
    assert [sum(r.label == x for r in limit_train(train, 12)) for x in counts] == [10, 1, 1]
    assert limit_train(train, None) == train and limit_train(train, 99) == train
