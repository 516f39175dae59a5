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
# a heading and its text on the same line (`Reasoning: ...`, `**Reasoning:** ...`); an empty one is missing
_REASONING = re.compile(r"^[ \t]*[*#-]*[ \t]*(?:reasoning|rationale|explanation|why)[ \t]*[*]*[ \t]*:[ \t*]*[^\s*]",
                        re.I | re.M)
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


def _named(line: str, labels: Sequence[str]) -> list[str]:
    """The labels a verdict line names, in order, as words (`_`, `-` and a space alike: `no animal`)."""
    found = []
    for label in labels:
        pattern = r"[ _-]".join(re.escape(part) for part in re.split(r"[ _-]", label))
        if m := re.search(rf"<?\b{pattern}\b>?", line, re.I):
            found.append((m.start(), label))
    return [label for _, label in sorted(found)]


def conclusion(text: str, labels: Sequence[str]) -> str | None:
    """The label a rationale's last verdict line names first (`Conclusion: <abnormal>`), or None. A label's
    `_`, `-` and spaces are alike (`no animal` is `no_animal`), as writers spell them either way."""
    verdicts = _VERDICT.findall(text)
    named = _named(verdicts[-1], labels) if verdicts else []
    return named[0] if named else None


def rejection(text: str | None, label: str | None, labels: Sequence[str], min_words: int = 12,
              dimensions: bool = True) -> str | None:
    """Why a rationale is not fit to train on, or None when it is.

    empty; too short (fewer than `min_words` words); degenerate repetition (a loop of the
    same words); missing lines of rbft's layout (checked with `dimensions`, for rationales
    asked for in that layout: the four dimensions, subjects, attributes, actions, scenes,
    each named, and the `Reasoning:` and `Conclusion:` lines, each with its text); a
    conclusion that names no label, or several; contradicts the label (its conclusion names another label than the video's).
    A description without reasoning toward the label is not a rationale: Stage I would
    teach the model what it already says.
    """
    words = (text or "").split()
    if not words:
        return "empty"
    if len(words) < min_words:
        return f"too short ({len(words)} words, fewer than {min_words})"
    if _repetitive(words):
        return "degenerate repetition"
    verdict = conclusion(text, labels)
    if dimensions:
        named = {m.lower().rstrip("s") + "s" for m in _HEADING.findall(text)}
        missing = [d for d in ("subjects", "attributes", "actions", "scenes") if d not in named]
        missing += [line for line, pattern in (("reasoning", _REASONING), ("conclusion", _VERDICT))
                    if not pattern.search(text)]
        if missing:
            return "missing: " + ", ".join(missing)
        if verdict is None:
            return "conclusion names no label"
        if len(_named(_VERDICT.findall(text)[-1], labels)) > 1:  # hedged, or the layout's options echoed back
            return "conclusion names several labels"
    if label is not None and verdict is not None and verdict != label:
        return f"contradicts the label (concludes {verdict}, the video is {label})"
    return None


def too_few_kept(facts: dict, min_share: float, source: str = "self") -> str | None:
    """Why Stage I must not train on these rationales (`summary`'s facts), or None: fewer than `min_share`
    of the records were kept, so what is left would be a skewed remnant of what the source writes."""
    if not facts.get("records") or facts["kept"] / facts["records"] >= min_share - 1e-9:
        return None
    reasons = ", ".join(f"{reason} {n}" for reason, n in facts.get("rejected_by_reason", {}).items())
    text = (f"Stage I stopped: only {facts['kept']} of {facts['records']} rationales passed the filter "
            f"(rejected: {reasons}; every record and its reason is in rationales.jsonl). ")
    if facts.get("failed"):
        text += f"{facts['failed']} generation(s) failed: run again to retry them. "
    if source in ("file", "scene"):
        return text + ("Check that the rationale file covers the training videos and writes a conclusion with "
                       "their label, or lower `rationales.min_kept_share` to train on the few that were kept.")
    return text + ("The source does not write rationales in rbft's layout (four dimensions, then `Reasoning:` "
                   "and `Conclusion:` naming the label). Use a model that can: `rationales.source: teacher` with a "
                   "bigger instruction-tuned VLM, `rationales.endpoint` for one behind a server, or "
                   "`rationales.source: file` with rationales written elsewhere; or lower "
                   "`rationales.min_kept_share` to train on the few that were kept.")


def _repetitive(words: list[str]) -> bool:
    """A 4-word sequence said 4+ times, or under a third of 3-word sequences distinct (in long texts)."""
    grams = Counter(tuple(w.lower() for w in words[i:i + 4]) for i in range(len(words) - 3))
    if grams and grams.most_common(1)[0][1] >= 4:
        return True
    if len(words) >= 30:
        tri = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
        return len(set(tri)) / len(tri) < 1 / 3
    return False


def _reason(rejected: str) -> str:
    """A rejection's kind, to count by: its text without details, but with the lines a rationale missed."""
    return rejected if rejected.startswith("missing: ") else re.split(r" \(|:", rejected)[0]


def summary(records: Iterable[dict]) -> dict:
    """Counts, length distribution (words) of kept rationales, and rejections by reason."""
    records = list(records)
    kept = [r for r in records if not r.get("rejected")]
    lengths = np.array([len((r.get("rationale") or "").split()) for r in kept])
    reasons = Counter(_reason(r["rejected"]) for r in records if r.get("rejected"))
    spread = ({q: int(np.percentile(lengths, p)) for q, p in (("min", 0), ("p10", 10), ("median", 50), ("p90", 90),
                                                             ("max", 100))} if len(lengths) else {})
    return {"records": len(records), "kept": len(kept), "rejected": len(records) - len(kept),
            "rejected_by_reason": dict(reasons.most_common()), "failed": reasons.get(FAILED, 0), "words": spread,
            "by_label": dict(Counter(r.get("label") for r in kept))}
