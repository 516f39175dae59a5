"""Evaluation: every method on the same test videos, what each model represents, and the comparison.

Label scoring (the default): the log-probability of each label's full target (`<abnormal>`)
as the reply to the video and P_label; the decision is the argmax of the scores, calibrated
(`eval.calibration: prior`, `rbft.calibration`: plus tau x log train prior, tau chosen on the
val split), so nothing fails to parse. Free generation (`eval.mode: generate`): the model's
greedy reply, read by `prompts.parse_label`; a reply naming no label counts as wrong and the
parse-failure rate is reported.

Each model is run once over the train, val and test videos (`eval-<name>`, by the main process
alone, as every eval stage): its label scores
and, from the same forward, its features (`features/<name>.npz`), which the linear probes
read (`rbft.probes`): the `probe` baseline on the frozen base model's, and per-stage probes on
the base model's, M_inter's, M*'s and direct SFT's (`representations` in results.json).
Each method's test predictions go to `predictions/<method>[-seed<k>].jsonl` (the decision,
the raw argmax and the scores); `results.json` holds the figures of DESIGN.md (`rbft.results`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rbft import calibration as cal
from rbft import probes
from rbft.config import ExperimentConfig, TaskConfig
from rbft.data.jsonl import write_jsonl
from rbft.data.manifest import VideoRecord
from rbft.errors import ConfigError
from rbft.generation import generate
from rbft.metrics import classification, interval, over_seeds
from rbft.modeling import load_for_videos
from rbft.predict import read_calibration
from rbft.prompts import label_examples, parse_label
from rbft.results import summarize
from rbft.runs import Run, by_main, eval_key, stage_key
from rbft.scoring import label_scores

SPLITS = ("train", "val", "test")


def evaluate(run: Run, splits: dict[str, list[VideoRecord]], frames: Callable, zero_shot: bool = True,
             refused: str | None = None) -> dict:
    """The stage: zero-shot and the probe baseline (unless an ablation's run), direct SFT and RB-FT of every seed on
    the test split, each model run once; per-stage probes; writes and returns results.json. `refused`: why RB-FT was
    not trained (its rationales did not pass the filter); results.json says so instead of scoring it."""
    config, test = run.config, splits["test"]
    if not test or any(v.label is None for v in test):
        raise ConfigError(f"{config.data.manifest}: eval needs labelled test videos (split: test, with a label)")
    videos = [v for s in SPLITS for v in splits.get(s, [])]
    ids = [v.id for v in videos]
    # (name, method: its predictions are a method's, or None: features only, model, key of what made it)
    jobs = [("zero_shot", "zero_shot", config.model.name_or_path, stage_key(config, "check"))] if zero_shot else []
    for seed in config.seeds:
        stages = [("direct_sft", "direct_sft")] + ([] if refused else [("rbft", "stage2"), ("m_inter", "stage1")])
        for method, stage in stages:
            trained = stage_key(config, stage, seed)
            if not run.is_done(f"{stage}-seed{seed}", trained):
                raise ConfigError(f"eval: {method} (seed {seed}) is not trained with these settings; run "
                                  "`rbft run CONFIG` without --only first")
            jobs.append((f"{method}-seed{seed}", None if method == "m_inter" else method, run.model_dir(stage, seed),
                         trained))
    methods: dict[str, list[Path]] = {}
    for name, method, model, trained in jobs:
        outputs = (f"features/{name}.npz",) + ((f"predictions/{name}.jsonl",) if method else ())
        if method:
            methods.setdefault(method, []).append(run.out / outputs[1])

        def work(model=model, method=method, outputs=outputs) -> None:
            scores, features = model_outputs(config, model, videos, frames)
            save_features(run.out / outputs[0], videos, scores, features)
            if method:
                decide = (read_calibration(model, list(config.task.labels)) if method != "zero_shot"
                          else calibration(config, splits, scores[:len(videos) - len(test)]))
                write_predictions(config, model, test, frames, run.out / outputs[1], scores[-len(test):], decide)

        run.stage(f"eval-{name}", eval_key(config, trained, ids), work, outputs, aside=False, doing=f"eval: {name}")
    if zero_shot:  # the probe baseline, on the frozen base model's features
        output = "predictions/probe.jsonl"
        run.stage("eval-probe", eval_key(config, "probe", ids), lambda: probe_baseline(run, splits, output),
                  (output,), aside=False, doing="eval: probe")
        methods = {"zero_shot": methods["zero_shot"], "probe": [run.out / output],
                   **{k: v for k, v in methods.items() if k != "zero_shot"}}
    summary = {**summarize(list(config.task.labels), config.seeds, methods), "train_videos": len(splits["train"])}
    summary["decisions"] = decisions(config, splits)
    summary["representations"] = representations(run, splits, zero_shot, refused)
    if refused:
        summary["refused"] = {"rbft": refused}
    summary["timings"] = run.timings()
    by_main(lambda: (run.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n"))
    return summary


def decisions(config: ExperimentConfig, splits: dict) -> str:
    """What the tables' decisions are, in words (results.json's `decisions`)."""
    if config.eval.mode == "generate":
        return "raw: each model's free reply, parsed"
    labels, val = list(config.task.labels), [v.label for v in splits.get("val") or []]
    why = ("eval.calibration: none" if config.eval.calibration == "none"
           else cal.unusable(val, labels, config.eval.calibration_min_val))
    if why is None:
        return ("calibrated: each method's label scores plus tau x log(train label share), tau chosen on the val "
                "split (`raw` beside each method: the plain argmax)")
    return f"raw: the argmax of each method's label scores ({why})"


def calibration(config: ExperimentConfig, splits: dict, scores: np.ndarray) -> cal.Calibration:
    """The calibration `config` asks for, chosen on the val split's rows of `scores` (train rows first, then val)."""
    labels, train, val = list(config.task.labels), splits["train"], splits.get("val") or []
    if config.eval.calibration == "none" or config.eval.mode == "generate":
        return cal.none(len(labels))
    return cal.choose(scores[len(train):len(train) + len(val)], [v.label for v in val], labels,
                      cal.log_prior([v.label for v in train], labels), config.eval.calibration_min_val)


def model_outputs(config: ExperimentConfig, model_dir: str | Path, videos: Sequence[VideoRecord],
                  frames: Callable) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The model's label scores for `videos` and, from the same forward, their features (`rbft.probes`)."""
    m, taken = config.model, {}
    scores = label_scores(config.task, model_dir, videos, frames, m.dtype, m.attn_implementation,
                          m.trust_remote_code, config.eval.batch_size, taken)
    return scores, taken


def save_features(path: Path, videos: Sequence[VideoRecord], scores: np.ndarray, features: dict) -> None:
    """Each video's id, split, label scores and features, in one file (by the one process that scores)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, ids=np.array([v.id for v in videos]), splits=np.array([v.split for v in videos]),
                            scores=scores, **features)


def load_features(path: Path, splits: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per split: the features saved at `path` (`label`, `vision`) of that split's videos, in the split's order."""
    with np.load(path) as saved:
        data = {k: saved[k] for k in saved.files}
    where = {i: k for k, i in enumerate(data["ids"].tolist())}
    return {s: {k: data[k][[where[v.id] for v in splits[s]]] for k in ("label", "vision") if k in data}
            for s in SPLITS if splits.get(s)}


def write_predictions(config: ExperimentConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                      out: Path, scores: np.ndarray | None = None, decide: cal.Calibration | None = None) -> None:
    """Judge `videos` with the model at `model_dir` as `config.eval` says; write their predictions to `out`
    (label scoring: the decision, calibrated by `decide`, the raw argmax and each label's score; generation: the
    reply, and `predicted` null when it did not parse). `scores`: the videos' label scores, when already taken."""
    m, e, labels = config.model, config.eval, list(config.task.labels)
    if e.mode == "score":
        if scores is None:
            scores = label_scores(config.task, model_dir, videos, frames, m.dtype, m.attn_implementation,
                                  m.trust_remote_code, e.batch_size)
        rows = score_rows(videos, scores, labels, decide or cal.none(len(labels)))
    else:
        replies = label_replies(config.task, model_dir, videos, frames, m.dtype, m.trust_remote_code,
                                e.max_new_tokens, e.batch_size)
        rows = [{"id": v.id, "label": v.label, "predicted": parsed, "reply": reply}
                for v, (reply, parsed) in zip(videos, replies)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)


def score_rows(videos: Sequence[VideoRecord], scores: np.ndarray, labels: list[str],
               decide: cal.Calibration) -> list[dict]:
    """One prediction row per video: the calibrated decision, the raw argmax, the scores and the calibration."""
    chosen = decide.decide(scores)
    return [{"id": v.id, "label": v.label, "predicted": labels[int(c)], "raw_predicted": labels[int(row.argmax())],
             "scores": {x: float(s) for x, s in zip(labels, row)}, "tau": decide.tau}
            for v, row, c in zip(videos, scores, chosen)]


def probe_baseline(run: Run, splits: dict, output: str) -> None:
    """The `probe` method: a linear probe on the frozen base model's features (features and C chosen on val),
    calibrated like every method, its test predictions written like one."""
    config, labels = run.config, list(run.config.task.labels)
    features = load_features(run.out / "features" / "zero_shot.npz", splits)
    val = splits.get("val") or []
    probe = probes.fit(features["train"], [v.label for v in splits["train"]], features.get("val"),
                       [v.label for v in val], labels)
    scores = np.concatenate([probe.log_proba(features[s]) for s in SPLITS if s in features])
    rows = score_rows(splits["test"], scores[-len(splits["test"]):], labels,
                      calibration(config, splits, scores[:len(scores) - len(splits["test"])]))
    for row in rows:
        row["probe"] = probe.describe()
    write_jsonl(run.out / output, rows)


def representations(run: Run, splits: dict, base: bool, refused: str | None) -> dict:
    """Per-stage probes: the label-position features of each model (the base model's when `base`, then M_inter, M*
    and direct SFT of each seed), each read by a probe fitted on train (C chosen on val) and scored on test:
    macro-F1 (mean and std over seeds, 95% interval over test videos) and accuracy."""
    config, labels = run.config, list(run.config.task.labels)
    truth = [v.label for v in splits["test"]]
    models = ([("base", ["zero_shot"])] if base else []) + [
        (stage, [f"{stage}-seed{seed}" for seed in config.seeds])
        for stage in (["direct_sft"] + ([] if refused else ["m_inter", "rbft"]))]
    out: dict = {"probe": "logistic regression on the last layer's state where the label is predicted "
                          "(features: label), fitted on train, C chosen on val", "models": {}}
    for stage, names in models:
        predicted, per_seed = [], []
        for name in names:
            path = run.out / "features" / f"{name}.npz"
            if not path.exists():
                break
            features = load_features(path, splits)
            val = splits.get("val") or []
            probe = probes.fit(features["train"], [v.label for v in splits["train"]], features.get("val"),
                               [v.label for v in val], labels, kinds=("label",))
            guess = [labels[i] for i in probe.log_proba(features["test"]).argmax(-1)]
            figures = classification(truth, guess, labels)
            per_seed.append({"macro_f1": figures["macro_f1"], "accuracy": figures["accuracy"], "C": probe.C})
            predicted.append(guess)
        if len(predicted) < len(names):
            continue
        spread = over_seeds([{**r, "per_class": {}} for r in per_seed])
        out["models"][stage] = {"macro_f1": spread["macro_f1"]["mean"], "std": spread["macro_f1"]["std"],
                                "accuracy": spread["accuracy"]["mean"],
                                "ci95": interval(truth, predicted, labels)["macro_f1"], "per_seed": per_seed}
    return out


def label_replies(task: TaskConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                  dtype: str = "auto", trust_remote_code: bool = False, max_new_tokens: int = 32,
                  batch_size: int = 8) -> list[tuple[str, str | None]]:
    """Each video's free reply to P_label (greedy) and the label parsed from it (None: a parse failure)."""
    model, collator = load_for_videos(model_dir, frames, dtype, "sdpa", trust_remote_code)
    replies = generate(model, collator, label_examples(task, videos), max_new_tokens=max_new_tokens,
                       batch_size=batch_size)
    return [(reply, parse_label(reply, list(task.labels))) for reply in replies]
