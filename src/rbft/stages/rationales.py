"""Offline data construction: a rationale for every usable training video, written as it is made.

Sources: `self` (the base model, the paper's default), `teacher` (another model),
`scene` (ground truth written out as a rationale, as the built-in world writes it beside its
manifests, `rbft.data.annotations`: an upper bound for ablations), or `file` (rationales
written elsewhere, such as the RB-FT authors' own, read by video id; rbft's layout is not
required of them, the other filters apply). Models run in this process or behind an
OpenAI-compatible server. Under
`accelerate launch` each process takes every n-th pending video and writes its own part
file; the main process merges them. A re-run skips what is written, retries failures,
and ends with one record per video; the filter's verdict is in each record's `rejected`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from rbft.config import ExperimentConfig
from rbft.data.annotations import scene_rationales_file
from rbft.data.manifest import VideoRecord
from rbft.data.rationales import FAILED, RationaleStore, compact, merge, rejection, summary
from rbft.errors import ConfigError
from rbft.generation import ChatClient, Decoding, generate_batches
from rbft.modeling import load_for_videos
from rbft.prompts import rationale_examples, sha256
from rbft.runs import Run, Unfinished, process_state, stage_key

FILE = "rationales.jsonl"
SUMMARY = "rationales_summary.json"


def writer_name(config: ExperimentConfig) -> str:
    """The `model` of the records: the teacher, the server's model, or the base model."""
    r = config.rationales
    if r.source == "scene":
        return "scene-record"
    if r.source == "file":
        return f"file:{r.file.name}"
    return r.endpoint_model or (r.teacher if r.source == "teacher" else config.model.name_or_path)


def rationales(run: Run, videos: Sequence[VideoRecord], frames: Callable) -> dict:
    """The stage: `rationales.jsonl` for the usable training videos; returns the summary. Not done while
    some generations failed: the next run retries them."""

    def work() -> dict:
        facts = make_rationales(run.config, videos, run.out, frames, run.log, run.bar("writing rationales", len(videos)))
        if facts.get("failed"):
            run.log(f"rationales: {facts['failed']} generation(s) failed (reasons in rationales.jsonl); "
                    "run again to retry them")
            return Unfinished(facts)
        return facts

    return run.stage("rationales", stage_key(run.config, "rationales"), work, (FILE, SUMMARY), everyone=True,
                     skipped="rationales: done with these settings; skipped")


def make_rationales(config: ExperimentConfig, videos: Sequence[VideoRecord], out: Path,
                    frames: Callable, log: Callable[[str], None] = print, on_record: Callable | None = None) -> dict:
    """Write `out/rationales.jsonl` for `videos` (usable training videos); returns the summary."""
    state = process_state()
    main = RationaleStore(out / FILE)
    if main.torn and state.is_main_process:
        log(f"{FILE}: dropped a torn last line left by an interrupted run")
    parts = sorted(out.glob("rationales.part*.jsonl"))
    done = main.done().union(*(RationaleStore(p).done() for p in parts))
    pending = [v for v in videos if v.id not in done]
    mine = pending[state.process_index::state.num_processes]
    state.wait_for_everyone()  # every process has read the files before any appends to them
    store = main if state.num_processes == 1 else RationaleStore(out / f"rationales.part{state.process_index}.jsonl")
    if state.is_main_process:
        log(f"rationales: {len(videos) - len(pending)} of {len(videos)} already written, {len(pending)} to write"
            + (f" over {state.num_processes} processes" if state.num_processes > 1 else ""))
    if mine:
        _write(config, mine, store, frames, on_record)
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    merge(main, sorted(out.glob("rationales.part*.jsonl")))
    compact(main, [v.id for v in videos])
    facts = summary(main.records[v.id] for v in videos if v.id in main.records)
    (out / SUMMARY).write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def _write(config: ExperimentConfig, videos: Sequence[VideoRecord], store: RationaleStore, frames: Callable,
           on_record: Callable | None) -> None:
    r = config.rationales
    examples = rationale_examples(config.task, videos, r.label_hint)
    decoding = Decoding(r.max_new_tokens, r.do_sample, r.temperature, r.top_p, seed=config.seeds[0])
    generation = {**decoding.to_json(), "backend": "http" if r.endpoint else "transformers"}

    def record(i: int, text: str | None, failure: str | None = None, why: str | None = None,
               writer: str | None = None) -> None:
        v, example = videos[i], examples[i]
        why = why or (f"{FAILED}: {failure}" if failure else verdict(config, text, v.label))
        store.append({"id": v.id, "video": str(v.video), "label": v.label, "rationale": text,
                      "source": r.source, "model": writer or writer_name(config),
                      "prompt_sha256": None if r.source == "file" else sha256(example.prompt),
                      "label_hint": r.label_hint if r.source != "scene" else None, "generation": generation,
                      "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rejected": why})
        if on_record:
            on_record()

    if r.source in ("file", "scene"):
        path = r.file if r.source == "file" else _scene_file(config)
        given = read_rationale_file(path, "rationales.file" if r.source == "file" else "rationales.source 'scene'")
        generation.clear()
        generation["backend"] = "file" if r.source == "file" else "scene record"
        for i, v in enumerate(videos):
            text, writer = given.get(v.id, (None, None))
            if text is None and r.source == "scene":
                raise ConfigError(f"{v.id}: no ground-truth rationale in {path}; was the manifest edited?")
            record(i, text, why=None if text else f"no rationale for this video in {path.name}", writer=writer)
    elif r.endpoint:
        client = ChatClient(r.endpoint, writer_name(config), os.environ.get(r.api_key_env), r.concurrency,
                            r.timeout_s, r.retries)
        try:
            for i, text, failure in client.complete_all(examples, frames, decoding):
                record(i, text, failure.reason + f" after {failure.attempts} attempt(s)" if failure else None)
        finally:
            client.close()
    else:
        m = config.model
        model, collator = load_for_videos(r.teacher if r.source == "teacher" else m.name_or_path, frames, m.dtype,
                                          m.attn_implementation, m.trust_remote_code)
        for batch in generate_batches(model, collator, examples, decoding, r.batch_size):
            for i, text in batch:
                record(i, text)


def verdict(config: ExperimentConfig, text: str | None, label: str | None) -> str | None:
    """The filter's verdict on a rationale under `config` (`rbft.data.rationales.rejection`): rbft's layout is
    asked of every source but `file`."""
    r = config.rationales
    return rejection(text, label, list(config.task.labels), r.min_words, dimensions=r.source != "file")


def judged(config: ExperimentConfig, records: Sequence[dict]) -> list[dict]:
    """The records with today's filter's verdict: a run folder written before the filter changed keeps the old
    verdicts in its file (its rationales stage is done), and Stage I must not train on what is now rejected."""
    out = []
    for record in records:
        why = record.get("rejected")
        if record.get("rationale") and not str(why or "").startswith(FAILED):
            why = verdict(config, record["rationale"], record.get("label"))
        out.append({**record, "rejected": why})
    return out


def read_rationale_file(path: Path, what: str = "rationales.file") -> dict[str, tuple[str, str]]:
    """id -> (rationale, its writer) from a JSONL of records (`id`, `rationale`, optionally `model`)."""
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = (row["rationale"], row.get("model") or row.get("source") or path.name)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{what} {path} line {n}: expected a JSON object with `id` and "
                              "`rationale`") from None
    return out


def _scene_file(config: ExperimentConfig) -> Path:
    """The ground-truth rationales of the task's videos, beside the manifest (a generated world writes them)."""
    path = scene_rationales_file(config.data.manifest, config.task.name)
    if not path.is_file():
        found = sorted(p.name.split(".")[0] for p in path.parent.glob("*.scene-rationales.jsonl"))
        raise ConfigError(
            f"rationales.source 'scene' needs the ground-truth rationales of task {config.task.name!r}, {path}; "
            "only a world written by `rbft world generate` has them"
            + (f" (this one for the tasks {found})" if found else "; a world drawn before rbft wrote them gets "
               "them from `rbft world generate` again (the same seed draws the same clips)")
            + ". Use source 'self' or 'teacher' for other data.")
    return path
