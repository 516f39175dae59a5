"""MultiHateClip: the `{train,valid,test}.tsv` annotation files of English_data/ or Chinese_data/."""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

from rbft.data.adapters import Imported, read_text
from rbft.errors import DataError

MULTIHATECLIP_LABELS = {"Normal": "normal", "Offensive": "offensive", "Hateful": "hateful"}


def read_multihateclip(source: Path, binary: bool, language: str) -> Imported:
    files = _multihateclip_files(source, language)
    imported, odd = Imported(), []
    first: dict[str, tuple[str, str]] = {}  # id -> (split, where)
    splits = {"train": "train", "valid": "val", "val": "val", "test": "test"}
    # the test files first: a video listed in train and test stays a test video (the published test set)
    for path in sorted(files, key=lambda p: splits.get(p.stem) != "test"):
        split = splits.get(path.stem)
        if split is None:
            raise DataError(f"{path}: expected train.tsv, valid.tsv or test.tsv (MultiHateClip's splits)")
        reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter="\t")
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
