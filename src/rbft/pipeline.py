"""The experiment of DESIGN.md, stage by stage: data check -> rationales -> stage I -> stage II, direct SFT,
eval, attention, ablations, report.

Each stage writes `done/<stage>[-seed<k>].json` with the hash of the settings it depends on
when it finishes; a re-run skips a stage whose hash matches and resumes one that was cut
short (rationales: the records written; training: the last checkpoint). A stage whose
settings changed starts afresh, and its earlier output is moved aside, not lost.

Ablations (`ablations:` in the config) run as whole experiments in `ablations/<name>/`,
each borrowing from the main run every stage whose hash is the same there (hard links, so
nothing is trained or scored twice): the rationale-source ablation retrains Stage I and II
but not direct SFT; the LoRA one retrains everything. Their figures join `results.json`.
The label budget's points (`label_budget:`) run the same way in `label_budget/labels-<n>/`,
and `results.json` gets their curve.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from rbft.config import BUDGET_PREFIX, ExperimentConfig
from rbft.data.cache import FrameCache
from rbft.data.manifest import VideoRecord, limit_train, load_manifest
from rbft.errors import ConfigError
from rbft.stages import process_state

STAGES = ("check", "rationales", "stage1", "stage2", "direct_sft", "eval", "attention", "ablations", "label_budget",
          "report")
ERRORS = "errors.jsonl"


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_key(config: ExperimentConfig, stage: str, seed: int | None = None) -> str:
    """The hash of everything `stage`'s output depends on (for training stages, with `seed`)."""
    manifest = hashlib.sha256(config.data.manifest.read_bytes()).hexdigest()
    check = _hash("check", manifest, config.data.model_dump(mode="json", exclude={"decode_workers", "train_limit"}))
    if stage == "check":
        return check
    base = (check, config.task.model_dump(), config.model.model_dump(), config.data.train_limit)
    training = config.training.model_dump(mode="json", exclude={"report_to"})
    if training["balance"] == "none":  # (runs from before these options keep their keys)
        del training["balance"]
    for stage_budget in ("stage1", "stage2"):
        if not training[stage_budget]["min_steps"]:
            del training[stage_budget]["min_steps"]
    if stage == "rationales":
        r = config.rationales.model_dump(mode="json", exclude={"concurrency", "timeout_s", "retries", "batch_size"})
        if r["file"] is None:
            del r["file"]  # (runs from before the file source keep their key)
        elif config.rationales.file.is_file():
            r["file"] = hashlib.sha256(config.rationales.file.read_bytes()).hexdigest()  # its content, not its name
        return _hash(stage, *base, r, config.seeds[0])
    if stage == "stage1":
        return _hash(stage, stage_key(config, "rationales"), {k: v for k, v in training.items() if k != "stage2"}, seed)
    if stage == "stage2":
        return _hash(stage, stage_key(config, "stage1", seed), training["stage2"], seed)
    if stage == "direct_sft":
        return _hash(stage, *base, {k: v for k, v in training.items() if k != "stage1"}, seed)
    raise AssertionError(stage)


class Run:
    """A run folder: its stages' done markers and outputs."""

    def __init__(self, out: Path, config: ExperimentConfig, log: Callable[[str], None], parent: "Run | None" = None):
        self.out, self.config, self.log, self.parent = out, config, log, parent
        (out / "done").mkdir(parents=True, exist_ok=True)

    def borrow(self, name: str, key: str, outputs: tuple[str, ...]) -> bool:
        """When the parent run finished `name` with the same settings, hard-link its outputs here; True if so."""
        parent = self.parent
        if parent is None or not parent.is_done(name, key) or not all((parent.out / o).exists() for o in outputs):
            return False
        state = process_state()
        if state.is_main_process:
            for output in outputs:
                source, dest = parent.out / output, self.out / output
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                dest.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, dest, copy_function=_link)
                else:
                    _link(source, dest)
            self._write(name, {**parent.marker(name), "borrowed_from": str(parent.out)})
            self.log(f"{name}: the same as in the main run; borrowed")
        state.wait_for_everyone()
        return True

    def marker(self, name: str) -> dict | None:
        path = self.out / "done" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def is_done(self, name: str, key: str) -> bool:
        marker = self.marker(name)
        return bool(marker and marker.get("complete") and marker.get("key") == key)

    def start(self, name: str, key: str, outputs: tuple[str, ...], fresh: bool = False) -> None:
        """Mark `name` begun; move aside outputs that another config (or `fresh`) made."""
        marker = self.marker(name)
        if marker and (marker.get("key") != key or fresh):
            for output in outputs:
                path = self.out / output
                if path.exists():
                    aside = path.with_name(f"{path.stem}.{marker.get('key', 'old')[:8]}{path.suffix}")
                    if aside.exists():
                        shutil.rmtree(aside) if aside.is_dir() else aside.unlink()
                    path.rename(aside)
                    self.log(f"{name}: settings changed since {output} was written; kept it as {aside.name}")
        self._write(name, {"key": key, "complete": False, "started_at": time.time()})

    def finish(self, name: str, key: str, seconds: float, facts: dict | None = None) -> None:
        self._write(name, {"key": key, "complete": True, "seconds": round(seconds, 1), **({"facts": facts} if facts else {})})

    def _write(self, name: str, marker: dict) -> None:
        path = self.out / "done" / f"{name}.json"
        path.with_suffix(".tmp").write_text(json.dumps(marker, indent=2) + "\n")
        path.with_suffix(".tmp").replace(path)


def run(config: ExperimentConfig, out: Path, only: str | None = None, fresh: bool = False,
        log: Callable[[str], None] = print, progress: Callable[[str, int], Callable] | None = None,
        parent: Run | None = None) -> dict:
    """Run the stages in order (or `only` one, after the data check it needs); returns each stage's facts.

    `parent`: the main run, for an ablation's run (it borrows what is the same and skips the
    zero-shot baseline, attention maps and report, which the main run has).
    """
    if only is not None and only not in STAGES:
        raise ConfigError(f"--only {only!r}: unknown stage; the stages are {', '.join(STAGES)}")
    state = process_state()
    run_ = Run(out, config, log if state.is_main_process else (lambda message: None), parent)  # one voice
    if state.is_main_process:
        (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    records = load_manifest(config.data.manifest, config.task.labels)
    cache, sampling = FrameCache(), config.data.sampling()
    frames = lambda path: cache.load(path, sampling)  # noqa: E731  (a Clip: frames and their times)
    facts: dict = {}
    if state.is_main_process:
        facts["check"] = _check(run_, records, cache, fresh, progress)
    state.wait_for_everyone()
    bad = {json.loads(line)["id"] for line in (out / ERRORS).read_text().splitlines()} if (out / ERRORS).exists() else set()
    splits = {s: [r for r in records if r.split == s and r.id not in bad] for s in ("train", "val", "test")}
    splits["train"] = limit_train(splits["train"], config.data.train_limit)
    if not splits["train"]:
        raise ConfigError(f"{config.data.manifest}: no usable training video (see {out / ERRORS})")
    wants = lambda stage: only in (None, stage)  # noqa: E731
    if any(wants(s) for s in ("stage1", "stage2", "direct_sft")):
        check_training(config)
    if wants("rationales") or (wants("stage1") and not run_.is_done("rationales", stage_key(config, "rationales"))):
        facts["rationales"] = _rationales(run_, splits["train"], frames, fresh, progress)
    for seed in config.seeds:
        if wants("stage1"):
            _stage1(run_, seed, frames, fresh)
        if wants("stage2"):
            _train(run_, "stage2", seed, fresh, lambda work, dest: _stage2(run_, seed, splits, frames, work, dest))
        if wants("direct_sft"):
            from rbft.stages.direct_sft import direct_sft

            _train(run_, "direct_sft", seed, fresh,
                   lambda work, dest: direct_sft(config, splits["train"], splits["val"], frames, work, dest, seed))
    if wants("eval"):
        facts["results"] = _evaluate(run_, splits["train"], splits["test"], frames, fresh, zero_shot=parent is None)
    if parent is not None:
        return facts
    if wants("attention"):
        facts["attention"] = _attention(run_, splits["test"], frames, fresh)
    if wants("ablations") and config.ablations:
        facts["ablations"] = _subruns(run_, "ablations", list(config.ablations), fresh, progress)
    if wants("label_budget") and config.label_budget.videos:
        points = [f"{BUDGET_PREFIX}{n}" for n in config.label_budget.videos if n < len(splits["train"])]
        if len(points) < len(config.label_budget.videos):
            run_.log(f"label_budget: only {len(splits['train'])} usable training videos, so the points at as many "
                     "or more are the main run itself")
        if points:
            facts["label_budget"] = _subruns(run_, "label_budget", points, fresh, progress)
    if wants("report") and state.is_main_process:
        _report(run_, frames, fresh)
    if facts.get("results") and (out / "results.json").exists():
        facts["results"] = json.loads((out / "results.json").read_text())  # with attention and ablations
    return facts


def _report(run_: Run, frames, fresh: bool) -> None:
    """report.html and report.md, unless they were written from these very results."""
    from rbft.stages.report import write_report

    results = run_.out / "results.json"
    if not results.exists():
        raise ConfigError("report: no results.json in the run folder yet; run `rbft run CONFIG` first")
    key = _hash("report", hashlib.sha256(results.read_bytes()).hexdigest(), run_.config.model_dump(mode="json"))
    if not fresh and run_.is_done("report", key) and (run_.out / "report.html").exists():
        run_.log(f"report: done with these results; {run_.out / 'report.html'}")
        return
    run_.start("report", key, ())
    started = time.perf_counter()
    html, _ = write_report(run_.out, frames)
    run_.finish("report", key, time.perf_counter() - started)
    run_.log(f"report: {html}")


def _subruns(run_: Run, kind: str, names: list[str], fresh: bool, progress) -> dict:
    """Each ablation (or label-budget point) as its own run under `<kind>/<name>/`; its figures and comparison
    into results.json under `kind` (the label budget as its curve, `rbft.stages.evaluate.budget_curve`)."""
    from rbft.stages.evaluate import budget_curve

    config, state = run_.config, process_state()
    if not (run_.out / "results.json").exists():
        raise ConfigError(f"{kind}: run the main experiment first (`rbft run CONFIG`)")
    changes = config.variants()
    facts = {}
    for name in names:
        run_.log(f"{kind} {name}: {json.dumps(changes[name])}")
        sub = run(config.ablation(name), run_.out / kind / name, None, fresh, run_.log, progress, parent=run_)
        results = sub["results"]
        facts[name] = {"changes": changes[name], "train_videos": results["train_videos"],
                       "methods": results["methods"], "comparisons": results["comparisons"]}
    path = run_.out / "results.json"
    results = json.loads(path.read_text())
    if kind == "label_budget":
        facts = budget_curve(results, list(facts.values()))
    if state.is_main_process:
        results[kind] = facts
        path.write_text(json.dumps(results, indent=2) + "\n")
    state.wait_for_everyone()
    return facts


def _link(source, dest) -> None:
    """A hard link where the file system allows, else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _attention(run_: Run, test: list[VideoRecord], frames, fresh: bool) -> dict:
    """Direct SFT's and RB-FT's (first seed) label attention: figures, and focus on the world; into results.json."""
    from rbft.stages.attention import attention_stage

    config, state, seed = run_.config, process_state(), run_.config.seeds[0]
    models = {m: (run_.out / "models" / m / f"seed{seed}", run_.out / "predictions" / f"{m}-seed{seed}.jsonl")
              for m in ("direct_sft", "rbft")}
    if not all(p.exists() for pair in models.values() for p in pair):
        raise ConfigError("attention needs the trained models and their predictions: run `rbft run CONFIG` first")
    key = _hash("attention", stage_key(config, "stage2", seed), stage_key(config, "direct_sft", seed),
                [v.id for v in test])
    facts = run_.marker("attention").get("facts", {}) if run_.is_done("attention", key) and not fresh else None
    if facts is None and state.is_main_process:
        run_.start("attention", key, ("attention",), fresh)
        started = time.perf_counter()
        run_.log("attention: drawing the label token's attention")
        facts = attention_stage(config, test, frames, models, run_.out / "attention")
        run_.finish("attention", key, time.perf_counter() - started, facts)
    state.wait_for_everyone()
    results_path = run_.out / "results.json"
    if state.is_main_process and facts and results_path.exists():
        results = json.loads(results_path.read_text())
        results["attention"] = facts
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    return facts or {}


def _evaluate(run_: Run, train: list[VideoRecord], test: list[VideoRecord], frames, fresh: bool,
              zero_shot: bool = True) -> dict:
    """Score zero-shot, direct SFT and RB-FT (every seed) on the test split; write results.json."""
    from rbft.stages.evaluate import predict, results

    config, state = run_.config, process_state()
    if not test or any(v.label is None for v in test):
        raise ConfigError(f"{config.data.manifest}: eval needs labelled test videos (split: test, with a label)")
    methods: dict[str, list[Path]] = {**({"zero_shot": []} if zero_shot else {}), "direct_sft": [], "rbft": []}
    jobs = [("zero_shot", None, config.model.name_or_path, stage_key(config, "check"))] if zero_shot else []
    for seed in config.seeds:
        for method, stage in (("direct_sft", "direct_sft"), ("rbft", "stage2")):
            if not run_.is_done(f"{stage}-seed{seed}", stage_key(config, stage, seed)):
                raise ConfigError(f"eval: {method} (seed {seed}) is not trained with these settings; run "
                                  "`rbft run CONFIG` without --only first")
            jobs.append((method, seed, run_.out / "models" / method / f"seed{seed}", stage_key(config, stage, seed)))
    for method, seed, model, trained in jobs:
        name = method if seed is None else f"{method}-seed{seed}"
        path = run_.out / "predictions" / f"{name}.jsonl"
        methods[method].append(path)
        key = _hash("eval", trained, config.model.model_dump(), config.task.model_dump(),
                    config.eval.model_dump(exclude={"batch_size"}), [v.id for v in test], stage_key(config, "check"))
        if not fresh and ((run_.is_done(f"eval-{name}", key) and path.exists())
                          or run_.borrow(f"eval-{name}", key, (f"predictions/{name}.jsonl",))):
            continue
        if state.is_main_process:
            run_.start(f"eval-{name}", key, ())
            started = time.perf_counter()
            run_.log(f"eval: {name}")
            predict(config, model, test, frames, path)
            run_.finish(f"eval-{name}", key, time.perf_counter() - started)
        state.wait_for_everyone()
    summary = {**results(config, run_.out, methods), "train_videos": len(train)}
    summary["timings"] = {p.stem: json.loads(p.read_text()).get("seconds") for p in sorted((run_.out / "done").glob("*.json"))}
    if state.is_main_process:
        (run_.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def check_training(config: ExperimentConfig) -> None:
    """Refuse, before any work, a training config the model cannot take (e.g. LoRA on modules it lacks)."""
    from rbft.modeling import model_skeleton
    from rbft.training import lora_targets

    t = config.training
    if t.method == "lora":
        lora_targets(model_skeleton(config.model.name_or_path, config.model.trust_remote_code), t.target_modules,
                     t.train_vision)


def _rationales(run_: Run, train: list[VideoRecord], frames, fresh: bool, progress) -> dict:
    from rbft.stages.rationales import make_rationales

    config, state, key = run_.config, process_state(), stage_key(run_.config, "rationales")
    if not fresh and (run_.is_done("rationales", key)
                      or run_.borrow("rationales", key, ("rationales.jsonl", "rationales_summary.json"))):
        run_.log("rationales: done with these settings; skipped")
        return run_.marker("rationales").get("facts", {})
    if state.is_main_process:
        run_.start("rationales", key, ("rationales.jsonl", "rationales_summary.json"), fresh)
    state.wait_for_everyone()
    started = time.perf_counter()
    tick = progress("writing rationales", len(train)) if progress and state.is_main_process else None
    summary = make_rationales(config, train, run_.out, frames, run_.log, tick)
    if state.is_main_process:
        if summary["failed"]:  # not done: the next run retries them
            run_.log(f"rationales: {summary['failed']} generation(s) failed (reasons in rationales.jsonl); "
                     "run again to retry them")
        else:
            run_.finish("rationales", key, time.perf_counter() - started, summary)
    state.wait_for_everyone()
    return summary


def _stage1(run_: Run, seed: int, frames, fresh: bool) -> None:
    from rbft.data.rationales import RationaleStore
    from rbft.stages.stage1 import stage1

    def go(work: Path, dest: Path) -> Path:
        rationales = list(RationaleStore(run_.out / "rationales.jsonl").records.values())
        return stage1(run_.config, rationales, frames, work, dest, seed)

    _train(run_, "stage1", seed, fresh, go)


def _stage2(run_: Run, seed: int, splits, frames, work: Path, dest: Path) -> Path:
    from rbft.stages.stage2 import stage2

    m_inter = run_.out / "models" / "stage1" / f"seed{seed}"
    if not run_.is_done(f"stage1-seed{seed}", stage_key(run_.config, "stage1", seed)):
        raise ConfigError(f"stage2 (seed {seed}) starts from Stage I's model, which is not done with these "
                          "settings: run `rbft run CONFIG` (or --only stage1) first")
    return stage2(run_.config, m_inter, splits["train"], splits["val"], frames, work, dest, seed)


def _train(run_: Run, stage: str, seed: int, fresh: bool, go: Callable[[Path, Path], Path]) -> None:
    """Run a training stage for `seed` unless done: checkpoints in train/<stage>/seed<k>, model in models/."""
    name, key, state = f"{stage}-seed{seed}", stage_key(run_.config, stage, seed), process_state()
    model_dir = f"models/{'rbft' if stage == 'stage2' else stage}/seed{seed}"
    if not fresh and (run_.is_done(name, key) or run_.borrow(name, key, (f"train/{stage}/seed{seed}", model_dir))):
        run_.log(f"{name}: done with these settings; skipped")
        return
    if state.is_main_process:
        run_.start(name, key, (f"train/{stage}/seed{seed}", model_dir), fresh)
    state.wait_for_everyone()
    run_.log(f"{name}: training")
    started = time.perf_counter()
    work = run_.out / "train" / stage / f"seed{seed}"
    go(work, run_.out / model_dir)
    if state.is_main_process:
        run_.finish(name, key, time.perf_counter() - started)
        if not run_.config.training.keep_checkpoints:  # only a cut run needs them
            shutil.rmtree(work / "checkpoints", ignore_errors=True)
    state.wait_for_everyone()


def _check(run_: Run, records: list[VideoRecord], cache: FrameCache, fresh: bool, progress) -> dict:
    from rbft.data.check import check_videos, summarize, write_errors

    key = stage_key(run_.config, "check")
    if run_.is_done("check", key) and not fresh:
        return run_.marker("check").get("facts", {})
    run_.start("check", key, ())
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
    run_.finish("check", key, time.perf_counter() - started, counts)
    return counts
