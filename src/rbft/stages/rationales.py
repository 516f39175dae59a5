"""Offline data construction: a rationale for every usable training video, written as it is made.

Sources: `self` (the base model, the paper's default), `teacher` (another model),
`scene` (the built-in world's ground truth written out as a rationale: an upper bound for
ablations), or `file` (rationales written elsewhere, such as the RB-FT authors' own, read
by video id; rbft's layout is not required of them, the other filters apply). Models run in this process or behind an OpenAI-compatible server. Under
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
from rbft.data.collate import Example
from rbft.data.manifest import VideoRecord
from rbft.data.rationales import FAILED, RationaleStore, compact, merge, rejection, summary
from rbft.errors import ConfigError
from rbft.stages import process_state
from rbft.generation import ChatClient, Decoding, generate_batches
from rbft.prompts import rationale_prompt, sha256, system_prompt

FILE = "rationales.jsonl"
SUMMARY = "rationales_summary.json"


def rationale_examples(config: ExperimentConfig, videos: Sequence[VideoRecord]) -> list[Example]:
    """(video, P_rationale) per video, with the label stated when `label_hint` is on."""
    task, hint = config.task, config.rationales.label_hint
    return [Example(v.id, v.video, rationale_prompt(task, v.label if hint else None), system=system_prompt(task))
            for v in videos]


def writer_name(config: ExperimentConfig) -> str:
    """The `model` of the records: the teacher, the server's model, or the base model."""
    r = config.rationales
    if r.source == "scene":
        return "scene-record"
    if r.source == "file":
        return f"file:{r.file.name}"
    return r.endpoint_model or (r.teacher if r.source == "teacher" else config.model.name_or_path)


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
    examples = rationale_examples(config, videos)
    decoding = Decoding(r.max_new_tokens, r.do_sample, r.temperature, r.top_p, seed=config.seeds[0])
    generation = {**decoding.to_json(), "backend": "http" if r.endpoint else "transformers"}
    labels = list(config.task.labels)

    def record(i: int, text: str | None, failure: str | None = None, why: str | None = None,
               writer: str | None = None) -> None:
        v, example = videos[i], examples[i]
        why = why or (f"{FAILED}: {failure}" if failure else
                      rejection(text, v.label, labels, r.min_words, dimensions=r.source != "file"))
        store.append({"id": v.id, "video": str(v.video), "label": v.label, "rationale": text,
                      "source": r.source, "model": writer or writer_name(config),
                      "prompt_sha256": None if r.source == "file" else sha256(example.prompt),
                      "label_hint": r.label_hint if r.source != "scene" else None, "generation": generation,
                      "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rejected": why})
        if on_record:
            on_record()

    if r.source == "file":
        given = read_rationale_file(r.file)
        generation.clear()
        generation["backend"] = "file"
        for i, v in enumerate(videos):
            text, writer = given.get(v.id, (None, None))
            record(i, text, why=None if text else f"no rationale for this video in {r.file.name}", writer=writer)
    elif r.source == "scene":
        scenes = _scenes(config)
        generation.clear()
        generation["backend"] = "scene record"
        for i, v in enumerate(videos):
            record(i, scene_rationale(config, scenes, v))
    elif r.endpoint:
        client = ChatClient(r.endpoint, writer_name(config), os.environ.get(r.api_key_env), r.concurrency,
                            r.timeout_s, r.retries)
        try:
            for i, text, failure in client.complete_all(examples, frames, decoding):
                record(i, text, failure.reason + f" after {failure.attempts} attempt(s)" if failure else None)
        finally:
            client.close()
    else:
        from rbft.data.collate import VideoChatCollator
        from rbft.modeling import load_model, load_processor

        name = r.teacher if r.source == "teacher" else config.model.name_or_path
        trust = config.model.trust_remote_code
        model = load_model(name, config.model.dtype, config.model.attn_implementation, trust)
        collator = VideoChatCollator(load_processor(name, trust), frames)
        for batch in generate_batches(model, collator, examples, decoding, r.batch_size):
            for i, text in batch:
                record(i, text)


def read_rationale_file(path: Path) -> dict[str, tuple[str, str]]:
    """id -> (rationale, its writer) from a JSONL of records (`id`, `rationale`, optionally `model`)."""
    if not path.is_file():
        raise ConfigError(f"rationales.file {path}: no such file")
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = (row["rationale"], row.get("model") or row.get("source") or path.name)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"rationales.file {path} line {n}: expected a JSON object with `id` and "
                              "`rationale`") from None
    return out


def _scenes(config: ExperimentConfig) -> dict[str, dict]:
    path = config.data.manifest.parent / "scenes.jsonl"
    if not path.is_file():
        raise ConfigError(f"rationales.source 'scene' needs the world's scene records, {path}; it only works on "
                          "a world written by `rbft world generate`. Use source 'self' or 'teacher' for other data.")
    from rbft.world.generate import load_scenes

    return load_scenes(path.parent)


def scene_rationale(config: ExperimentConfig, scenes: dict[str, dict], video: VideoRecord) -> str:
    """The ground truth of a world clip, in the rationale layout, ending in its label."""
    from rbft.prompts import CONCLUSION, label_target
    from rbft.world.captions import structured
    from rbft.world.scenes import scene_record
    from rbft.world.tasks import RULES, explain

    if video.id not in scenes:
        raise ConfigError(f"{video.id}: no scene record in scenes.jsonl; was the manifest edited?")
    if config.task.name not in RULES:
        raise ConfigError(f"rationales.source 'scene' knows the world's tasks {sorted(RULES)}, "
                          f"not {config.task.name!r}")
    record = scene_record(scenes[video.id])
    return (f"{structured(record)}\nReasoning: {explain(config.task.name, record)}\n"
            f"{CONCLUSION} {label_target(video.label or '')}")
