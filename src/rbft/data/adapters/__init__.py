"""Public datasets' published annotation files -> an rbft manifest (`rbft data import`).

Each reader takes the file as published, or the folder that holds it:

smarthome-bench  SmartHome-Bench (SmartHome-LLM): `Video_Annotation.csv` (Title, Category, Anomaly Tag,
                 Video Description, Reasoning behind Normality/Anomalies; UTF-8 with a BOM). Labels
                 normal / abnormal / vague ("Vague Abnormal"); `binary` counts vague as abnormal, as the
                 benchmark's scoring does. Categories, the description and the reasoning go to `meta`
                 (the last two are reference rationales); `Video_url.csv` beside it adds each URL (or
                 marks the staff's private videos), and `Trim_Videos/Trim_video_label.csv` the seconds
                 to trim from each download (`trim_s`: > 0 from the end, < 0 from the start). The release has no splits: a seeded split,
                 stratified by label, is drawn.
multihateclip    MultiHateClip: `{train,valid,test}.tsv` of English_data/ or Chinese_data/ (Video_ID,
                 Majority_Voting, Label, Target_Victim, Component, Duration). Labels hateful /
                 offensive / normal, or with `binary` hateful_or_offensive / normal. The files are
                 the splits. The annotators' labels, targets, components and segments go to `meta`.
rbft-authors     The RB-FT authors' SmartHome files: `sft_label.json` (train), `test.json` (test) and
                 `reasoning_w_answer.json` (their Stage I rationales, written out as an rbft
                 rationale file usable as `rationales: {source: file}`). Binary, vague counted as
                 abnormal, as they did.

Rows that cannot be used are named with why (unknown label, a video listed twice or in two
splits, a row too short); the rest is written. A video is looked for in `videos` by its id
(any common container); without it, or when absent, the record keeps its expected path
(`videos/<id>.mp4` beside the manifest) and is counted as missing.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rbft.data.jsonl import write_jsonl
from rbft.data.manifest import VIDEO_SUFFIXES
from rbft.errors import DataError

FORMATS = ("smarthome-bench", "multihateclip", "rbft-authors")


@dataclass
class Imported:
    """What an import gives: manifest rows, the rows it could not use, and extra files to write."""

    rows: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"source", "id", "reason"}
    rationales: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a user should know about the files read


def import_dataset(fmt: str, source: Path, out: Path, videos: Path | None = None, binary: bool = False,
                   language: str = "english", seed: int = 0, val_fraction: float = 0.1,
                   test_fraction: float = 0.2) -> dict:
    """Read `source` as `fmt`, write the manifest `out` (and `<out stem>.rationales.jsonl` when the
    dataset carries rationales); returns the summary: records, labels, splits, categories, missing
    videos, skipped rows."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder (point at the dataset's annotation file or its folder)")
    if fmt == "smarthome-bench":
        from rbft.data.adapters.smarthome import read_smarthome

        imported = read_smarthome(source, binary, seed, val_fraction, test_fraction)
    elif fmt == "multihateclip":
        from rbft.data.adapters.multihateclip import read_multihateclip

        imported = read_multihateclip(source, binary, language)
    elif fmt == "rbft-authors":
        from rbft.data.adapters.rbft_authors import read_authors

        imported = read_authors(source)
    else:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    missing = place_videos(imported.rows, videos, out.parent)
    write_jsonl(out, imported.rows)
    summary = {"format": fmt, "manifest": str(out), "records": len(imported.rows),
               "labels": dict(Counter(r["label"] for r in imported.rows)),
               "splits": {s: dict(Counter(r["label"] for r in imported.rows if r["split"] == s))
                          for s in ("train", "val", "test")},
               "videos_missing": missing, "skipped": imported.skipped, "notes": imported.notes}
    categories = Counter(c for r in imported.rows for c in r["meta"].get("categories", []))
    if categories:
        summary["categories"] = dict(categories)
    if imported.rationales:
        path = out.with_name(out.stem + ".rationales.jsonl")
        by_video = {r["id"]: r["video"] for r in imported.rows}
        for record in imported.rationales:
            record["video"] = by_video.get(record["id"], record["video"])
        write_jsonl(path, imported.rationales)
        summary["rationales"] = {"file": str(path), "records": len(imported.rationales)}
    return summary


def place_videos(rows: list[dict], videos: Path | None, manifest_dir: Path) -> int:
    """Point each row at its video file (by id, any common container); count the absent ones."""
    found: dict[str, Path] = {}
    if videos is not None:
        if not Path(videos).is_dir():
            raise DataError(f"--videos {videos}: not a folder")
        for path in sorted(Path(videos).rglob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                found.setdefault(path.stem, path)
    base = Path(videos) if videos is not None else manifest_dir / "videos"
    missing = 0
    for row in rows:
        path = found.get(row["id"])
        if path is None:
            path, missing = base / f"{row['id']}.mp4", missing + 1
        row["video"] = relative(path, manifest_dir)
    return missing


def relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def find(source: Path, names: tuple[str, ...], what: str) -> Path:
    if source.is_file():
        return source
    for name in names:
        hits = sorted(source.rglob(name))
        if hits:
            return hits[0]
    raise DataError(f"{source}: no {what} found in this folder (looked for {', '.join(names)})")


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; is this the dataset's published file?") from None


def demojibake(text: str) -> str:
    """Undo UTF-8 read as Mac Roman (`‚Äú` -> a curly quote), which SmartHome-Bench's text carries."""
    if not any(ch in text for ch in "‚Ä√"):
        return text
    try:
        return text.encode("mac_roman").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def stratified_split(rows: list[dict], seed: int, val_fraction: float, test_fraction: float) -> None:
    """Assign `split` to rows with none: per label, shuffled by `seed`, test and val shares rounded."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError("--val and --test must be fractions that leave some videos for training")
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    rng = random.Random(seed)
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda r: r["id"])
        rng.shuffle(group)
        n_test, n_val = round(len(group) * test_fraction), round(len(group) * val_fraction)
        for i, row in enumerate(group):
            row["split"] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
