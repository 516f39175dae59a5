"""The experiment of DESIGN.md, stage by stage: data check -> rationales -> (stage I -> stage II, baselines, eval).

Each stage writes `done/<stage>.json` with the hash of the settings it depends on when it
finishes; a re-run skips a stage whose hash matches and resumes one that was cut short.
A stage whose settings changed starts afresh, and its earlier output is moved aside, not lost.
Stage I, Stage II, direct SFT, evaluation and the report are not built yet; `run` says so.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from rbft.config import ExperimentConfig
from rbft.data.cache import FrameCache
from rbft.data.manifest import VideoRecord, load_manifest
from rbft.errors import ConfigError
from rbft.stages import process_state

STAGES = ("check", "rationales", "stage1", "stage2", "direct_sft", "eval", "attention", "report")
BUILT = ("check", "rationales")
ERRORS = "errors.jsonl"


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_key(config: ExperimentConfig, stage: str) -> str:
    """The hash of everything `stage`'s output depends on."""
    manifest = hashlib.sha256(config.data.manifest.read_bytes()).hexdigest()
    data = config.data.model_dump(mode="json", exclude={"decode_workers"})
    if stage == "check":
        return _hash(stage, manifest, data)
    return _hash(stage, manifest, data, config.task.model_dump(), config.model.model_dump(),
                 config.rationales.model_dump(exclude={"concurrency", "timeout_s", "retries", "batch_size"}),
                 config.seeds[0])


class Run:
    """A run folder: its stages' done markers and outputs."""

    def __init__(self, out: Path, config: ExperimentConfig, log: Callable[[str], None]):
        self.out, self.config, self.log = out, config, log
        (out / "done").mkdir(parents=True, exist_ok=True)

    def marker(self, stage: str) -> dict | None:
        path = self.out / "done" / f"{stage}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def is_done(self, stage: str) -> bool:
        marker = self.marker(stage)
        return bool(marker and marker.get("complete") and marker.get("key") == stage_key(self.config, stage))

    def start(self, stage: str, outputs: tuple[str, ...], fresh: bool = False) -> None:
        """Mark `stage` begun; move aside outputs that another config (or `fresh`) made."""
        key, marker = stage_key(self.config, stage), self.marker(stage)
        if marker and (marker.get("key") != key or fresh):
            for name in outputs:
                path = self.out / name
                if path.exists():
                    aside = path.with_name(f"{path.stem}.{marker.get('key', 'old')[:8]}{path.suffix}")
                    path.rename(aside)
                    self.log(f"{stage}: settings changed since {name} was written; kept it as {aside.name}")
        self._write(stage, {"key": key, "complete": False, "started_at": time.time()})

    def finish(self, stage: str, seconds: float, facts: dict | None = None) -> None:
        self._write(stage, {"key": stage_key(self.config, stage), "complete": True, "seconds": round(seconds, 1),
                            **({"facts": facts} if facts else {})})

    def _write(self, stage: str, marker: dict) -> None:
        path = self.out / "done" / f"{stage}.json"
        path.with_suffix(".tmp").write_text(json.dumps(marker, indent=2) + "\n")
        path.with_suffix(".tmp").replace(path)


def run(config: ExperimentConfig, out: Path, only: str | None = None, fresh: bool = False,
        log: Callable[[str], None] = print, progress: Callable[[str, int], Callable] | None = None) -> dict:
    """Run the built stages in order (or `only` one, after the data check it needs); returns each stage's facts."""
    if only is not None and only not in STAGES:
        raise ConfigError(f"--only {only!r}: unknown stage; the stages are {', '.join(STAGES)}")
    if only is not None and only not in BUILT:
        raise ConfigError(f"--only {only}: this stage is not built yet in this version of rbft; "
                          f"built: {', '.join(BUILT)}")
    state = process_state()
    run_ = Run(out, config, log)
    if state.is_main_process:
        (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    records = load_manifest(config.data.manifest, config.task.labels)
    cache = FrameCache()
    sampling = config.data.sampling()
    facts: dict = {}
    if state.is_main_process:
        facts["check"] = _check(run_, records, cache, fresh, progress)
    state.wait_for_everyone()
    bad = {json.loads(line)["id"] for line in (out / ERRORS).read_text().splitlines()} if (out / ERRORS).exists() else set()
    train = [r for r in records if r.split == "train" and r.id not in bad]
    if not train:
        raise ConfigError(f"{config.data.manifest}: no usable training video (see {out / ERRORS})")
    if only in (None, "rationales"):
        if run_.is_done("rationales") and not fresh:
            log("rationales: done with these settings; skipped")
            facts["rationales"] = run_.marker("rationales").get("facts", {})
        else:
            from rbft.stages.rationales import make_rationales

            if state.is_main_process:
                run_.start("rationales", ("rationales.jsonl", "rationales_summary.json"), fresh)
            state.wait_for_everyone()
            started = time.perf_counter()
            tick = progress("writing rationales", len(train)) if progress and state.is_main_process else None
            summary = make_rationales(config, train, out, lambda p: cache.load(p, sampling).frames, log, tick)
            if state.is_main_process:
                facts["rationales"] = summary
                if summary["failed"]:  # not done: the next run retries them
                    log(f"rationales: {summary['failed']} generation(s) failed (reasons in rationales.jsonl); "
                        "run again to retry them")
                else:
                    run_.finish("rationales", time.perf_counter() - started, summary)
    if only is None:
        log("not built yet: " + ", ".join(s for s in STAGES if s not in BUILT)
            + "; this run stops after the rationales")
    return facts


def _check(run_: Run, records: list[VideoRecord], cache: FrameCache, fresh: bool, progress) -> dict:
    from rbft.data.check import check_videos, summarize, write_errors

    if run_.is_done("check") and not fresh:
        return run_.marker("check").get("facts", {})
    run_.start("check", ())
    started = time.perf_counter()
    tick = progress("checking videos", len(records)) if progress else None
    results = check_videos(records, run_.config.data.sampling(), cache=cache, workers=run_.config.data.decode_workers,
                           on_result=(lambda _: tick()) if tick else None)
    write_errors(results, run_.out / ERRORS)
    counts = summarize(results)
    dropped = len(results) - counts["usable"]
    if dropped:
        run_.log(f"data check: {dropped} of {len(results)} videos unusable, listed in {ERRORS}; the run goes on "
                 "without them")
    run_.finish("check", time.perf_counter() - started, counts)
    return counts
