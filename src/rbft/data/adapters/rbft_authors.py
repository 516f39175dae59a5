"""The RB-FT authors' own SmartHome files: their split, labels and Stage I rationales."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rbft.data.adapters import Imported, read_text
from rbft.errors import DataError


def read_authors(source: Path) -> Imported:
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
        data = json.loads(read_text(path))
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
