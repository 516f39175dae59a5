"""The experiment of DESIGN.md, in the order of the paper's Figure 1: data check -> rationales -> Stage I ->
Stage II, the baselines (direct SFT; zero-shot is scored in eval), eval, attention, ablations, label budget,
report.

Each stage is one file of `rbft.stages`; the run folder (`rbft.runs`) skips a stage done with
the same settings, resumes one cut short, and starts afresh, keeping the old outputs aside,
one whose settings changed.

Ablations (`ablations:` in the config) run as whole experiments in `ablations/<name>/`,
each borrowing from the main run every stage whose key is the same there (hard links, so
nothing is trained or scored twice): the rationale-source ablation retrains Stage I and II
but not direct SFT; the LoRA one retrains everything. Their figures join `results.json`.
The label budget's points (`label_budget:`) run the same way in `label_budget/labels-<n>/`,
and `results.json` gets their curve.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rbft.config import BUDGET_PREFIX, ExperimentConfig
from rbft.data.cache import FrameCache
from rbft.data.manifest import load_manifest
from rbft.errors import ConfigError
from rbft.results import budget_curve
from rbft.runs import Run, process_state, stage_key
from rbft.stages.attention import attention
from rbft.stages.check import check, usable_splits
from rbft.stages.direct_sft import direct_sft
from rbft.stages.evaluate import evaluate
from rbft.stages.rationales import rationales
from rbft.stages.report import report
from rbft.stages.stage1 import refusal, stage1
from rbft.stages.stage2 import stage2
from rbft.training import check_settings

STAGES = ("check", "rationales", "stage1", "stage2", "direct_sft", "eval", "attention", "ablations", "label_budget",
          "report")


def run(config: ExperimentConfig, out: Path, only: str | None = None, fresh: bool = False,
        log: Callable[[str], None] = print, progress: Callable[[str, int], Callable] | None = None,
        parent: Run | None = None) -> dict:
    """Run the stages in order (or `only` one, after the data check it needs); returns each stage's facts.

    `parent`: the main run, for an ablation's run (it borrows what is the same and skips the
    zero-shot baseline, attention maps and report, which the main run has).
    """
    if only is not None and only not in STAGES:
        raise ConfigError(f"--only {only!r}: unknown stage; the stages are {', '.join(STAGES)}")
    wants = lambda stage: only in (None, stage)  # noqa: E731
    process_state(config.training.process_timeout_s)  # first: it makes the process group, with this timeout
    run_ = Run(out, config, log, parent, fresh, progress)
    records = load_manifest(config.data.manifest, config.task.labels)
    cache, sampling = FrameCache(), config.data.sampling()
    frames = lambda path: cache.load(path, sampling)  # noqa: E731  (a Clip: frames and their times)

    facts: dict = {"check": check(run_, records, cache)}  # unusable videos listed, left out from here on
    splits = usable_splits(run_, records)
    if any(wants(s) for s in ("stage1", "stage2", "direct_sft")):
        check_settings(config)
    if wants("rationales") or (wants("stage1") and not run_.is_done("rationales", stage_key(config, "rationales"))):
        facts["rationales"] = rationales(run_, splits["train"], frames)  # offline data construction
    # too few rationales pass the filter: stop before Stage I (in `stage1`), or with `on_too_few: skip` run
    # everything but RB-FT, and say why it is missing
    refused = refusal(run_) if config.rationales.on_too_few == "skip" else None
    if refused:
        run_.log(f"RB-FT skipped (rationales.on_too_few: skip): {refused}")
    for seed in config.seeds:
        if wants("stage1") and not refused:
            stage1(run_, seed, frames)  # M_inter
        if wants("stage2") and not refused:
            stage2(run_, seed, splits, frames)  # M*, RB-FT's classifier
        if wants("direct_sft"):
            direct_sft(run_, seed, splits, frames)  # the baseline, with Stage II's budget
    if wants("eval"):
        facts["results"] = evaluate(run_, splits, frames, zero_shot=parent is None, refused=refused)
    if parent is not None:
        return facts

    if wants("attention"):
        facts["attention"] = attention(run_, splits["test"], frames, rbft=not refused)
    if wants("ablations") and config.ablations:
        facts["ablations"] = _variants(run_, "ablations", list(config.ablations))
    if wants("label_budget") and (points := _budget_points(run_, len(splits["train"]))):
        facts["label_budget"] = _variants(run_, "label_budget", points)
    if wants("report"):
        report(run_, frames)
    if facts.get("results") and (out / "results.json").exists():
        facts["results"] = json.loads((out / "results.json").read_text())  # with attention and ablations
    return facts


def _budget_points(run_: Run, usable: int) -> list[str]:
    """The label budget's points below the number of usable training videos (the rest are the main run itself)."""
    videos = run_.config.label_budget.videos
    points = [f"{BUDGET_PREFIX}{n}" for n in videos if n < usable]
    if len(points) < len(videos):
        run_.log(f"label_budget: only {usable} usable training videos, so the points at as many or more are the "
                 "main run itself")
    return points


def _variants(run_: Run, kind: str, names: list[str]) -> dict:
    """Each ablation (or label-budget point) as its own run under `<kind>/<name>/`; its figures and comparison
    into results.json under `kind` (the label budget as its curve, `rbft.results.budget_curve`)."""
    config = run_.config
    if not (run_.out / "results.json").exists():
        raise ConfigError(f"{kind}: run the main experiment first (`rbft run CONFIG`)")
    changes = config.variants()
    facts = {}
    for name in names:
        run_.log(f"{kind} {name}: {json.dumps(changes[name])}")
        sub = run(config.ablation(name), run_.out / kind / name, None, run_.fresh, run_.log, run_.progress, run_)
        results = sub["results"]
        facts[name] = {"changes": changes[name], "train_videos": results["train_videos"],
                       "methods": results["methods"], "comparisons": results["comparisons"],
                       "representations": results.get("representations", {})}
    if kind == "label_budget":
        facts = budget_curve(json.loads((run_.out / "results.json").read_text()), list(facts.values()))
    run_.add_results(kind, facts)
    return facts
