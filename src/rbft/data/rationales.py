"""`rationales.jsonl`: the rationale records, written append-only and resumable, and the filter.

A record (DESIGN.md): id, video, rationale, source, model, prompt_sha256, generation,
created_at, rejected (null, or why the filter dropped it or the generation failed), plus
the video's label and whether the prompt stated it. Each record is one line, flushed and
synced as soon as it is written, so a kill loses at most the line being written; a torn
last line is detected on the next open and cut off. Several processes each append to
their own part file, merged into the main file at the end. `compact` rewrites the file
atomically with one record per id (the last one: a retried failure replaces the failure).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FAILED = "generation failed"  # prefix of `rejected` for a record whose generation never succeeded
_HEADING = re.compile(r"^\s*[*#-]*\s*(subjects?|attributes?|actions?|scenes?)\s*[*]*\s*:", re.I | re.M)
# a verdict heading and its text on the same line (`Conclusion: <abnormal>`, `**Classification:** abnormal`)
_VERDICT = re.compile(r"^[ \t]*[*#-]*[ \t]*(?:conclusion|classification|answer|label|verdict)[ \t]*[*]*[ \t]*:"
                      r"[ \t*]*([^\s*].*)$", re.I | re.M)


class RationaleStore:
    """An append-only JSONL file of records keyed by `id`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.torn = 0
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        good = 0
        for line in data.splitlines(keepends=True):
            try:
                record = json.loads(line)
                ok = line.endswith(b"\n") and isinstance(record, dict) and "id" in record
            except (json.JSONDecodeError, UnicodeDecodeError):
                ok = False
            if not ok:  # only a kill mid-write tears a line, and only the last one
                self.torn += 1
                break
            self.records[record["id"]] = record
            good += len(line)
        if good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["id"]] = record

    def done(self) -> set[str]:
        """Ids that need no more work: written, and not a failed generation (those are retried)."""
        return {i for i, r in self.records.items() if not str(r.get("rejected") or "").startswith(FAILED)}


def merge(main: RationaleStore, parts: Iterable[Path]) -> None:
    """Append the part files' records to `main`, then delete the parts."""
    for part in parts:
        for record in RationaleStore(part).records.values():
            main.append(record)
        part.unlink()


def compact(store: RationaleStore, order: Sequence[str]) -> None:
    """Rewrite the file atomically with exactly one record per id, in `order` (then any others)."""
    ids = [i for i in order if i in store.records] + [i for i in store.records if i not in set(order)]
    tmp = store.path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in ids:
            f.write(json.dumps(store.records[i], ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, store.path)


def conclusion(text: str, labels: Sequence[str]) -> str | None:
    """The label a rationale's last verdict line names first (`Conclusion: <abnormal>`), or None. A label's
    `_`, `-` and spaces are alike (`no animal` is `no_animal`), as writers spell them either way."""
    verdicts = _VERDICT.findall(text)
    if not verdicts:
        return None
    named = []
    for label in labels:
        pattern = r"[ _-]".join(re.escape(part) for part in re.split(r"[ _-]", label))
        if m := re.search(rf"<?\b{pattern}\b>?", verdicts[-1], re.I):
            named.append((m.start(), label))
    return min(named)[1] if named else None


def rejection(text: str | None, label: str | None, labels: Sequence[str], min_words: int = 12,
              dimensions: bool = True) -> str | None:
    """Why a rationale is not fit to train on, or None when it is.

    empty; too short (fewer than `min_words` words); degenerate repetition (a loop of the
    same words); missing dimensions (subjects, attributes, actions, scenes not each named;
    checked with `dimensions`, for rationales asked for in rbft's layout); contradicts the
    label (its conclusion names another label than the video's).
    """
    words = (text or "").split()
    if not words:
        return "empty"
    if len(words) < min_words:
        return f"too short ({len(words)} words, fewer than {min_words})"
    if _repetitive(words):
        return "degenerate repetition"
    named = {m.lower().rstrip("s") + "s" for m in _HEADING.findall(text)}
    missing = [d for d in ("subjects", "attributes", "actions", "scenes") if d not in named]
    if missing and dimensions:
        return "missing dimensions: " + ", ".join(missing)
    verdict = conclusion(text, labels)
    if label is not None and verdict is not None and verdict != label:
        return f"contradicts the label (concludes {verdict}, the video is {label})"
    return None


def _repetitive(words: list[str]) -> bool:
    """A 4-word sequence said 4+ times, or under a third of 3-word sequences distinct (in long texts)."""
    grams = Counter(tuple(w.lower() for w in words[i:i + 4]) for i in range(len(words) - 3))
    if grams and grams.most_common(1)[0][1] >= 4:
        return True
    if len(words) >= 30:
        tri = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
        return len(set(tri)) / len(tri) < 1 / 3
    return False


def summary(records: Iterable[dict]) -> dict:
    """Counts, length distribution (words) of kept rationales, and rejections by reason."""
    records = list(records)
    kept = [r for r in records if not r.get("rejected")]
    lengths = np.array([len((r.get("rationale") or "").split()) for r in kept])
    reasons = Counter(re.split(r" \(|:", r["rejected"])[0] for r in records if r.get("rejected"))
    spread = ({q: int(np.percentile(lengths, p)) for q, p in (("min", 0), ("p10", 10), ("median", 50), ("p90", 90),
                                                             ("max", 100))} if len(lengths) else {})
    return {"records": len(records), "kept": len(kept), "rejected": len(records) - len(kept),
            "rejected_by_reason": dict(reasons.most_common()), "failed": reasons.get(FAILED, 0), "words": spread,
            "by_label": dict(Counter(r.get("label") for r in kept))}
