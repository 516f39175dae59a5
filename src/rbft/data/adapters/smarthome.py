"""SmartHome-Bench (SmartHome-LLM): `Video_Annotation.csv` and the files published beside it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rbft.data.adapters import Imported, demojibake, find, read_text, stratified_split
from rbft.errors import DataError

SMARTHOME_TAGS = {"Normal": "normal", "Abnormal": "abnormal", "Vague Abnormal": "vague"}


def read_smarthome(source: Path, binary: bool, seed: int, val_fraction: float, test_fraction: float) -> Imported:
    path = find(source, ("Video_Annotation.csv", "Annotation_vad_1203.csv"), "SmartHome-Bench annotation file")
    if path.suffix.lower() == ".xlsx":
        raise DataError(f"{path}: the first release's .xlsx is not read; use Videos/Video_Annotation.csv of the "
                        "current release (or save the sheet as CSV)")
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
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
                "description": demojibake((row.get("Video Description") or "").strip()),
                "reasoning": demojibake((row.get("Reasoning behind Normality/Anomalies") or "").strip())}
        if id_column == "Video Name" and row.get("Title"):
            meta["legacy_id"] = row["Title"].strip()
        if vid in urls:
            meta["url"] = urls[vid]
            meta["private"] = urls[vid] is None
        if vid in trims:  # seconds to cut from the downloaded video: > 0 from its end, < 0 from its start
            meta["trim_s"] = trims[vid]
        imported.rows.append({"id": vid, "video": "", "label": "abnormal" if binary and label == "vague" else label,
                              "split": None, "meta": meta})
    stratified_split(imported.rows, seed, val_fraction, test_fraction)
    return imported


def _smarthome_urls(path: Path) -> dict[str, str | None]:
    """Title -> URL from Video_url.csv when it is beside the annotations (None: the staff's private videos)."""
    if not path.is_file():
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO(read_text(path), newline="")):
        url = (row.get("URL") or "").strip()
        out[(row.get("Title") or "").strip()] = None if not url.startswith("http") else url
    return out


def _smarthome_trims(path: Path) -> dict[str, float]:
    """Title -> seconds to trim, from Trim_Videos/Trim_video_label.csv when it is beside the annotations."""
    if not path.is_file():
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO(read_text(path), newline="")):
        try:
            out[(row.get("Title") or "").strip()] = float(row.get("Time") or 0)
        except ValueError:
            continue
    return out
