"""The manifest: one video a line (JSONL, or CSV with the same columns), validated all at once.

    {"id": "clip_0001", "video": "videos/clip_0001.mp4", "label": "abnormal", "split": "train", "meta": {}}

`id` defaults to the file stem and must be unique; `split` is train, val or test; `label`
must be one of the task's labels (test videos may omit it). Relative video paths resolve
against the manifest's folder. Every problem is collected, with its line number, and
raised together in one ManifestError, so a user fixes a file in one pass.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from rbft.errors import ManifestError

SPLITS = ("train", "val", "test")
COLUMNS = ("id", "video", "label", "split", "meta")


@dataclass(frozen=True)
class VideoRecord:
    id: str
    video: Path  # absolute
    label: str | None
    split: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    line: int = field(default=0, compare=False)  # where it stands in the manifest


def load_manifest(path: str | Path, labels: Collection[str] | None = None) -> list[VideoRecord]:
    """Read and validate a manifest. With `labels`, every label must be one of them, and
    train/val videos must have one."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, ["file not found" if not path.exists() else "not a file"])
    rows = _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)
    problems: list[str] = []
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if isinstance(row, str):
            problems.append(f"line {line}: {row}")
            continue
        record, errors = _record(path.parent, line, row, labels)
        problems += [f"line {line}: {e}" for e in errors]
        if record is None:
            continue
        if record.id in seen:
            problems.append(f"line {line}: duplicate id {record.id!r} (first on line {seen[record.id]})")
            continue
        seen[record.id] = line
        records.append(record)
    if not problems and not records:
        problems.append("no videos listed")
    if problems:
        raise ManifestError(path, problems)
    return records


def _read_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                yield line, f"not valid JSON ({e.msg} at column {e.colno})"
                continue
            yield line, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"


def _read_csv(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        unknown = set(reader.fieldnames or ()) - set(COLUMNS)
        if "video" not in (reader.fieldnames or ()) or unknown:
            yield 1, f"the header must name the columns {', '.join(COLUMNS)} (video required); got {reader.fieldnames}"
            return
        for row in reader:
            line = reader.line_num
            if None in row:
                yield line, "more fields than the header has columns"
                continue
            row = {k: v for k, v in row.items() if v not in (None, "")}
            if "meta" in row:
                try:
                    row["meta"] = json.loads(row["meta"])
                except json.JSONDecodeError:
                    yield line, "the meta column must hold a JSON object"
                    continue
            yield line, row


def _record(base: Path, line: int, row: dict, labels: Collection[str] | None):
    errors = []
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        errors.append(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(COLUMNS)}; put extras in meta)")
    video = row.get("video")
    if not isinstance(video, str) or not video.strip():
        return None, errors + ["missing 'video' (the path of the video file)"]
    record_id = row.get("id", Path(video).stem)
    if not isinstance(record_id, str) or not record_id.strip():
        errors.append(f"'id' must be a non-empty string, got {record_id!r}")
    split = row.get("split", "train")
    if split not in SPLITS:
        errors.append(f"split {split!r} is not one of {', '.join(SPLITS)}")
    label = row.get("label")
    if label is not None and not isinstance(label, str):
        errors.append(f"'label' must be a string, got {label!r}")
    elif labels is not None and label is not None and label not in labels:
        errors.append(f"label {label!r} is not one of the task's labels ({', '.join(labels)})")
    elif labels is not None and label is None and split in ("train", "val"):
        errors.append(f"a {split} video needs a label (one of {', '.join(labels)})")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        errors.append("'meta' must be an object")
    if errors:
        return None, errors
    path = Path(video).expanduser()
    path = path if path.is_absolute() else base / path
    return VideoRecord(record_id, Path(os.path.abspath(path)), label, split, meta, line), []


# media a camera, phone or website writes; anything else in a folder is not offered as a video
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .qt .mkv .webm .avi .ts .mts .m2ts .mpg .mpeg .3gp .3g2 .flv .wmv .asf .ogv .m4a .dav .h264 .hevc".split()
)


def records_from_folder(folder: str | Path) -> list[VideoRecord]:
    """Every media file under `folder` (by suffix, recursively, hidden files skipped), unlabelled;
    ids are the paths relative to the folder."""
    folder = Path(folder)
    paths = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in VIDEO_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return [VideoRecord(p.relative_to(folder).as_posix(), Path(os.path.abspath(p)), None, "test") for p in paths]


def limit_train(train: list[VideoRecord], limit: int | None) -> list[VideoRecord]:
    """The first `limit` training videos in manifest order, each label keeping its share (at least one)."""
    if limit is None or limit >= len(train):
        return train
    by_label: dict = {}
    for record in train:
        by_label.setdefault(record.label, []).append(record)
    share = {label: limit * len(rows) / len(train) for label, rows in by_label.items()}
    quota = {label: max(1, int(x)) for label, x in share.items()}
    while sum(quota.values()) < limit:  # the rest to the labels furthest below their share, with videos left
        room = [x for x in quota if quota[x] < len(by_label[x])]
        quota[max(room, key=lambda x: share[x] - quota[x])] += 1
    while sum(quota.values()) > limit and max(quota.values()) > 1:  # the one-each floor can overshoot
        quota[max(quota, key=quota.get)] -= 1
    keep = {r.id for label, rows in by_label.items() for r in rows[:quota[label]]}
    return [r for r in train if r.id in keep]
