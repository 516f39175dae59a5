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

import ast
import csv
import io
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rbft.errors import DataError

FORMATS = ("smarthome-bench", "multihateclip", "rbft-authors")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".flv", ".m4v", ".ts")
SMARTHOME_TAGS = {"Normal": "normal", "Abnormal": "abnormal", "Vague Abnormal": "vague"}
MULTIHATECLIP_LABELS = {"Normal": "normal", "Offensive": "offensive", "Hateful": "hateful"}


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
        imported = _smarthome(source, binary, seed, val_fraction, test_fraction)
    elif fmt == "multihateclip":
        imported = _multihateclip(source, binary, language)
    elif fmt == "rbft-authors":
        imported = _authors(source)
    else:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    missing = _place_videos(imported.rows, videos, out.parent)
    _write_jsonl(out, imported.rows)
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
        _write_jsonl(path, imported.rationales)
        summary["rationales"] = {"file": str(path), "records": len(imported.rationales)}
    return summary


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def _place_videos(rows: list[dict], videos: Path | None, manifest_dir: Path) -> int:
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
        row["video"] = _relative(path, manifest_dir)
    return missing


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def _find(source: Path, names: tuple[str, ...], what: str) -> Path:
    if source.is_file():
        return source
    for name in names:
        hits = sorted(source.rglob(name))
        if hits:
            return hits[0]
    raise DataError(f"{source}: no {what} found in this folder (looked for {', '.join(names)})")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; is this the dataset's published file?") from None


def _demojibake(text: str) -> str:
    """Undo UTF-8 read as Mac Roman (`‚Äú` -> a curly quote), which SmartHome-Bench's text carries."""
    if not any(ch in text for ch in "‚Ä√"):
        return text
    try:
        return text.encode("mac_roman").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _stratified_split(rows: list[dict], seed: int, val_fraction: float, test_fraction: float) -> None:
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


def _smarthome(source: Path, binary: bool, seed: int, val_fraction: float, test_fraction: float) -> Imported:
    path = _find(source, ("Video_Annotation.csv", "Annotation_vad_1203.csv"), "SmartHome-Bench annotation file")
    if path.suffix.lower() == ".xlsx":
        raise DataError(f"{path}: the first release's .xlsx is not read; use Videos/Video_Annotation.csv of the "
                        "current release (or save the sheet as CSV)")
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    fields = set(reader.fieldnames or ())
    tag_column = "Anomaly Tag" if "Anomaly Tag" in fields else "Label"
    # the layout before upstream's renaming kept the smartbench id in "Video Name" and a legacy id in "Title"
    id_column = "Video Name" if "Video Name" in fields else "Title"
    if not {id_column, tag_column} <= fields:
        raise DataError(f"{path}: expected the columns Title and Anomaly Tag (SmartHome-Bench's "
                        f"Video_Annotation.csv); found {', '.join(sorted(fields)) or 'none'}")
    urls = _smarthome_urls(path.parent / "Video_url.csv")
    trims = _smarthome_trims(path.parent / "Trim_Videos" / "Trim_video_label.csv")
    imported, seen = Imported(), set()
    for line, row in enumerate(reader, start=2):
        vid = (row.get(id_column) or "").strip()
        tag = (row.get(tag_column) or "").strip()
        where = f"{path.name}:{line}"
        if not vid:
            imported.skipped.append({"source": where, "id": None, "reason": "no video id"})
            continue
        if vid in seen:
            imported.skipped.append({"source": where, "id": vid, "reason": "video listed twice; the first row is kept"})
            continue
        if tag not in SMARTHOME_TAGS:
            imported.skipped.append({"source": where, "id": vid, "reason": f"unknown anomaly tag {tag!r}"})
            continue
        seen.add(vid)
        label = SMARTHOME_TAGS[tag]
        meta = {"anomaly_tag": tag,
                "categories": [c.strip() for c in (row.get("Category") or "").split(",") if c.strip()],
                "description": _demojibake((row.get("Video Description") or "").strip()),
                "reasoning": _demojibake((row.get("Reasoning behind Normality/Anomalies") or "").strip())}
        if id_column == "Video Name" and row.get("Title"):
            meta["legacy_id"] = row["Title"].strip()
        if vid in urls:
            meta["url"] = urls[vid]
            meta["private"] = urls[vid] is None
        if vid in trims:  # seconds to cut from the downloaded video: > 0 from its end, < 0 from its start
            meta["trim_s"] = trims[vid]
        imported.rows.append({"id": vid, "video": "", "label": "abnormal" if binary and label == "vague" else label,
                              "split": None, "meta": meta})
    _stratified_split(imported.rows, seed, val_fraction, test_fraction)
    return imported


def _smarthome_urls(path: Path) -> dict[str, str | None]:
    """Title -> URL from Video_url.csv when it is beside the annotations (None: the staff's private videos)."""
    if not path.is_file():
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO(_read_text(path), newline="")):
        url = (row.get("URL") or "").strip()
        out[(row.get("Title") or "").strip()] = None if not url.startswith("http") else url
    return out


def _smarthome_trims(path: Path) -> dict[str, float]:
    """Title -> seconds to trim, from Trim_Videos/Trim_video_label.csv when it is beside the annotations."""
    if not path.is_file():
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO(_read_text(path), newline="")):
        try:
            out[(row.get("Title") or "").strip()] = float(row.get("Time") or 0)
        except ValueError:
            continue
    return out


def _multihateclip(source: Path, binary: bool, language: str) -> Imported:
    files = _multihateclip_files(source, language)
    imported, odd = Imported(), []
    first: dict[str, tuple[str, str]] = {}  # id -> (split, where)
    splits = {"train": "train", "valid": "val", "val": "val", "test": "test"}
    # the test files first: a video listed in train and test stays a test video (the published test set)
    for path in sorted(files, key=lambda p: splits.get(p.stem) != "test"):
        split = splits.get(path.stem)
        if split is None:
            raise DataError(f"{path}: expected train.tsv, valid.tsv or test.tsv (MultiHateClip's splits)")
        reader = csv.DictReader(io.StringIO(_read_text(path), newline=""), delimiter="\t")
        if not {"Video_ID", "Majority_Voting"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path}: expected MultiHateClip's columns Video_ID and Majority_Voting; found "
                            f"{', '.join(reader.fieldnames or ()) or 'none'}")
        for line, row in enumerate(reader, start=2):
            vid, gold = (row.get("Video_ID") or "").strip(), (row.get("Majority_Voting") or "").strip()
            where = f"{path.parent.parent.name}/{path.parent.name}/{path.name}:{line}"
            if not vid:
                imported.skipped.append({"source": where, "id": None, "reason": "no video id"})
                continue
            if vid in first:
                other_split, other = first[vid]
                reason = (f"video also in {other_split} ({other}); kept there only" if other_split != split
                          else f"video listed twice (also {other})")
                imported.skipped.append({"source": where, "id": vid, "reason": reason})
                continue
            if gold not in MULTIHATECLIP_LABELS:
                imported.skipped.append({"source": where, "id": vid, "reason": f"unknown majority label {gold!r}"})
                continue
            first[vid] = (split, where)
            label = MULTIHATECLIP_LABELS[gold]
            if binary:
                label = "normal" if label == "normal" else "hateful_or_offensive"
            meta = {"majority": gold, "language": language,
                    **{key.lower(): _literal(row.get(key)) for key in ("Label", "Target_Victim", "Component", "Duration")
                       if key in row}}
            meta["annotators"] = meta.pop("label", None)
            if isinstance(meta["annotators"], list) and gold not in meta["annotators"]:
                odd.append(vid)
            imported.rows.append({"id": vid, "video": "", "label": label, "split": split, "meta": meta})
    if odd:
        imported.notes.append(f"{len(odd)} video(s) whose majority label no annotator gave (kept, as published): "
                              + ", ".join(odd[:10]))
    order = {"train": 0, "val": 1, "test": 2}
    imported.rows.sort(key=lambda r: order[r["split"]])  # train, val, test; file order inside each
    return imported


def _multihateclip_files(source: Path, language: str) -> list[Path]:
    if source.is_file():
        return [source]
    folder = {"english": "English_data", "chinese": "Chinese_data"}.get(language)
    if folder is None:
        raise DataError(f"--language {language!r}: MultiHateClip has english and chinese")
    for candidate in (source / folder / "annotation", source / "annotation", source):
        files = sorted(p for p in candidate.glob("*.tsv") if p.stem in ("train", "valid", "test"))
        if files:
            return files
    raise DataError(f"{source}: no MultiHateClip train/valid/test.tsv found (looked in {folder}/annotation/, "
                    "annotation/ and the folder itself)")


def _literal(cell: str | None):
    """A Python-literal list cell (`['Woman']`, `[(30, 39)]`) as data; the raw text when it is not one."""
    if cell is None:
        return None
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell
    return [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, list) else value


def _authors(source: Path) -> Imported:
    folder = source if source.is_dir() else source.parent
    files = {name: folder / f"{name}.json" for name in ("sft_label", "test", "reasoning_w_answer")}
    absent = [p.name for name, p in files.items() if name != "reasoning_w_answer" and not p.is_file()]
    if absent:
        raise DataError(f"{folder}: {', '.join(absent)} not found (the authors' files: sft_label.json, test.json, "
                        "reasoning_w_answer.json)")
    imported, seen = Imported(), {}
    for name, split in (("test", "test"), ("sft_label", "train")):
        disagree = 0
        for i, item in enumerate(_json_list(files[name])):
            vid = _authors_id(item)
            where = f"{name}.json[{i}]"
            # the target reply is the label they trained and scored on; `ground_truth` is wrong in their
            # test.json (abnormal on every row), so it is only the fallback
            stated = str(item.get("ground_truth", "")).strip().lower()
            label = _reply(item).lower().strip(" .'\"")
            label = label if label in ("normal", "abnormal") else stated
            disagree += stated != label
            if vid in seen:
                imported.skipped.append({"source": where, "id": vid, "reason": f"video also in {seen[vid]}; kept there only"})
                continue
            if label not in ("normal", "abnormal"):
                imported.skipped.append({"source": where, "id": vid, "reason": f"unknown ground_truth {label!r}"})
                continue
            seen[vid] = where
            imported.rows.append({"id": vid, "video": "", "label": label, "split": split,
                                  "meta": {"authors_video": item.get("video")}})
        if disagree:
            imported.notes.append(f"{name}.json: `ground_truth` differs from the target reply on {disagree} rows; "
                                  "the label is the reply's")
    imported.rows.sort(key=lambda r: r["split"] != "train")
    if files["reasoning_w_answer"].is_file():
        created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        train = {r["id"] for r in imported.rows if r["split"] == "train"}
        for i, item in enumerate(_json_list(files["reasoning_w_answer"])):
            vid, reply = _authors_id(item), _reply(item)
            if vid not in train or not reply:
                imported.skipped.append({"source": f"reasoning_w_answer.json[{i}]", "id": vid,
                                         "reason": "rationale of a video not in the training split" if reply
                                         else "rationale without a reply"})
                continue
            imported.rationales.append({"id": vid, "video": "", "label": str(item.get("ground_truth")).lower(),
                                        "rationale": reply, "source": "rbft-authors", "model": "rbft-authors",
                                        "prompt_sha256": None, "label_hint": True, "generation": None,
                                        "created_at": created, "rejected": None})
    return imported


def _json_list(path: Path) -> list[dict]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of conversations")
    return data


def _authors_id(item: dict) -> str:
    """`smartbench_0002-anomaly-detection` -> `smartbench_0002` (the video file's stem)."""
    video = item.get("video")
    return Path(video).stem if video else str(item.get("id", "")).removesuffix("-anomaly-detection")


def _reply(item: dict) -> str:
    turns = item.get("conversations") or []
    replies = [t.get("value", "") for t in turns if t.get("from") in ("gpt", "assistant")]
    return replies[-1].strip() if replies else ""
