"""`results.json`: every method's figures from its prediction files, and the one set of tables the CLI,
report.html and report.md show of them.

Per method and seed: accuracy, macro-F1, per-class figures and the confusion matrix; over
seeds their mean and spread, a 95% bootstrap interval over test videos and each seed's
predicted label counts; RB-FT minus direct SFT with its interval and paired test; the
label-budget curve. The tables below are plain rows of text, so every front end renders
the same figures the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rbft.data.jsonl import read_jsonl
from rbft.metrics import classification, compare, interval, over_seeds

NAMES = {"zero_shot": "zero-shot", "probe": "linear probe", "direct_sft": "direct SFT", "rbft": "RB-FT"}
STAGE_NAMES = {"base": "base model (frozen)", "direct_sft": "direct SFT", "m_inter": "M_inter (after Stage I)",
               "rbft": "M* (RB-FT)"}


def figures(rows: list[dict], labels: list[str], key: str = "predicted") -> dict:
    """One prediction file's figures by the decisions under `key`; a reply that did not parse counts as wrong,
    and its rate is reported."""
    out = classification([r["label"] for r in rows], predicted(rows, key), labels, _scores(rows, labels))
    if any("reply" in r for r in rows):
        out["parse_failure_rate"] = sum(r["predicted"] is None for r in rows) / len(rows)
    return out


def predicted(rows: list[dict], key: str = "predicted") -> list[str]:
    """Each row's predicted label (`key`: `raw_predicted` for the uncalibrated argmax); a free reply that named
    none is "" (wrong for every metric)."""
    return [r.get(key, r["predicted"]) or "" for r in rows]


def summarize(labels: list[str], seeds: list[int], methods: dict[str, list[Path]]) -> dict:
    """`results.json` from the prediction files (one per seed of each method): figures per method and seed,
    mean and std over seeds, and RB-FT minus direct SFT with its interval and paired test."""
    out: dict = {"labels": labels, "seeds": list(seeds), "methods": {}, "comparisons": {}}
    predictions = {name: [read_jsonl(p) for p in paths] for name, paths in methods.items()}
    for name, runs in predictions.items():
        out["methods"][name] = _method(runs, labels)
        if "raw_predicted" in runs[0][0]:  # label scoring: the plain argmax beside the calibrated decisions
            raw = _method(runs, labels, "raw_predicted")
            out["methods"][name]["raw"] = {k: raw[k] for k in ("accuracy", "macro_f1", "ci95", "over_seeds",
                                                                "predicted_counts")}
            out["methods"][name]["tau"] = [rows[0].get("tau", 0.0) for rows in runs]
    if "rbft" in predictions and "direct_sft" in predictions:
        truth = [r["label"] for r in predictions["rbft"][0]]
        out["comparisons"]["rbft_minus_direct_sft"] = compare(
            truth, [predicted(rows) for rows in predictions["rbft"]],
            [predicted(rows) for rows in predictions["direct_sft"]], labels)
    return out


def _method(runs: list[list[dict]], labels: list[str], key: str = "predicted") -> dict:
    """One method's figures over its seeds' prediction files, by the decisions under `key`."""
    per_seed = [figures(rows, labels, key) for rows in runs]
    head = dict(per_seed[0]) if len(per_seed) == 1 else {"n": per_seed[0]["n"], **_mean_figures(per_seed)}
    ci95 = interval([r["label"] for r in runs[0]], [predicted(rows, key) for rows in runs], labels)
    counts = [{x: predicted(rows, key).count(x) for x in labels} for rows in runs]  # a collapse shows here
    return {**head, "ci95": ci95, "over_seeds": over_seeds(per_seed), "per_seed": per_seed, "predicted_counts": counts}


def _scores(rows, labels):
    return np.array([[r["scores"][x] for x in labels] for r in rows]) if len(labels) == 2 and "scores" in rows[0] else None


def _mean_figures(per_seed: list[dict]) -> dict:
    """The headline figures of several seeds: means (the confusion matrix summed)."""
    labels = list(per_seed[0]["per_class"])
    mean = lambda key: float(np.mean([r[key] for r in per_seed]))  # noqa: E731
    out = {"accuracy": mean("accuracy"), "macro_f1": mean("macro_f1"),
           "per_class": {x: {k: float(np.mean([r["per_class"][x][k] for r in per_seed]))
                             for k in ("precision", "recall", "f1")} | {"support": per_seed[0]["per_class"][x]["support"]}
                         for x in labels},
           "confusion_matrix": np.sum([r["confusion_matrix"] for r in per_seed], axis=0).tolist()}
    for key in ("roc_auc", "pr_auc"):
        if all(key in r for r in per_seed):
            out[key] = mean(key)
    return out


def budget_curve(main: dict, points: Sequence[dict]) -> dict:
    """The label-budget curve: per number of labelled training videos, each fine-tuned method's macro-F1
    (mean and std over seeds, 95% interval over test videos) and RB-FT minus direct SFT with its interval;
    the main run (the whole train split) is the last point. Zero-shot and a model that answers the
    majority label for every video are the references (neither depends on the budget)."""
    rows = []
    for point in [*points, main]:
        methods = {name: {"macro_f1": m["over_seeds"]["macro_f1"]["mean"], "std": m["over_seeds"]["macro_f1"]["std"],
                          "ci95": m["ci95"]["macro_f1"], "seeds": len(m["per_seed"])}
                   for name, m in point["methods"].items() if name in ("direct_sft", "rbft")}
        delta = point["comparisons"].get("rbft_minus_direct_sft", {}).get("delta", {}).get("macro_f1")
        rows.append({"videos": point["train_videos"], "methods": methods, "rbft_minus_direct_sft": delta})
    support = [c["support"] for c in next(iter(main["methods"].values()))["per_class"].values()]
    share = max(support) / sum(support)
    zero_shot = main["methods"].get("zero_shot", {}).get("macro_f1")
    return {"points": sorted(rows, key=lambda r: r["videos"]), "zero_shot_macro_f1": zero_shot,
            "majority_macro_f1": 2 * share / (1 + share) / len(support)}


# --- the tables, as rows of text ------------------------------------------------------------------

def cell(m: dict, key: str) -> str:
    """`mean ± std` over seeds, and the 95% bootstrap interval over test videos."""
    s, ci = m["over_seeds"][key], m.get("ci95", {}).get(key)
    return f"{s['mean']:.3f} ± {s['std']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def delta_text(d: dict) -> str:
    """A paired difference and its 95% interval: `+0.045 (95% CI +0.006 to +0.086)`."""
    return f"{d['delta']:+.3f} (95% CI {d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f})"


def method_rows(results: dict) -> list[tuple[str, dict]]:
    """(display name, figures) for each method, then each ablation's methods."""
    rows = [(NAMES.get(name, name), m) for name, m in results["methods"].items()]
    for name, ablation in results.get("ablations", {}).items():
        rows += [(f"{NAMES.get(method, method)} [{name}]", m) for method, m in ablation["methods"].items()]
    return rows


def method_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Each method's (and ablation's) seeds, accuracy and macro-F1 (mean ± std [95% CI]), the raw argmax's when the
    decisions are calibrated, and per-class F1."""
    labels, methods = results["labels"], method_rows(results)
    raw = any(m.get("raw") for _, m in methods) and results.get("decisions", "").startswith("calibrated")
    head = ["method", "seeds", "accuracy ± std [95% CI]", "macro-F1 ± std [95% CI]",
            *(["raw argmax: accuracy / macro-F1 (tau)"] if raw else []), *(f"F1 {x}" for x in labels)]
    rows = []
    for name, m in methods:
        if "parse_failure_rate" in m:
            name += f" (parse failures {m['parse_failure_rate']:.1%})"
        extra = []
        if raw:
            r = m.get("raw")
            taus = ", ".join(f"{t:g}" for t in m.get("tau", []))
            extra = [f"{r['accuracy']:.3f} / {r['macro_f1']:.3f} ({taus})" if r else ""]
        rows.append([name, str(len(m["per_seed"])), cell(m, "accuracy"), cell(m, "macro_f1"), *extra,
                     *(f"{m['over_seeds']['per_class_f1'][x]['mean']:.3f}" for x in labels)])
    return head, rows


def representation_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per-stage probes (results.json's `representations`, the main run's then each ablation's): how much a linear
    probe reads of the task from each model's features, macro-F1 (mean ± std over seeds [95% CI]) and accuracy."""
    head = ["model (linear probe on its features)", "seeds", "probe macro-F1 ± std [95% CI]", "probe accuracy"]
    rows = []
    sources = [("", results.get("representations", {}))] + [
        (f" [{name}]", a.get("representations", {})) for name, a in results.get("ablations", {}).items()]
    main = results.get("representations", {}).get("models", {})
    for suffix, representations in sources:
        for stage, m in representations.get("models", {}).items():
            if suffix and main.get(stage) == m:  # an ablation's model borrowed from the main run (direct SFT)
                continue
            rows.append([STAGE_NAMES.get(stage, stage) + suffix, str(len(m["per_seed"])),
                         f"{m['macro_f1']:.3f} ± {m['std']:.3f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]",
                         f"{m['accuracy']:.3f}"])
    return head, rows


def comparison_lines(results: dict, prefix: str = "") -> list[str]:
    """RB-FT minus direct SFT: each figure's difference with its interval (after `prefix`), and McNemar's test
    per seed."""
    refused = results.get("refused", {}).get("rbft")
    lines = [f"RB-FT was not trained: {refused}"] if refused else []
    comparison = results.get("comparisons", {}).get("rbft_minus_direct_sft")
    if not comparison:
        return lines
    lines += [f"{prefix}{key}: {delta_text(d)}" for key, d in comparison["delta"].items()]
    ps = ", ".join(f"{t['p_value']:.3g} ({t['only_first_right']} vs {t['only_second_right']} videos)"
                   for t in comparison["mcnemar"])
    return lines + [f"McNemar exact test per seed: p = {ps}"]


def ablation_lines(results: dict) -> list[str]:
    """Each ablation's RB-FT minus direct SFT, each figure with its interval."""
    lines = []
    for name, ablation in results.get("ablations", {}).items():
        delta = ablation["comparisons"].get("rbft_minus_direct_sft", {}).get("delta", {})
        lines += [f"ablation {name}: RB-FT minus direct SFT, {key} {delta_text(d)}" for key, d in delta.items()]
    return lines


def budget_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """The label-budget table: per number of labelled videos, each method's macro-F1 and RB-FT's difference."""
    head = ["labelled videos", "seeds", "direct SFT macro-F1 [95% CI]", "RB-FT macro-F1 [95% CI]",
            "RB-FT minus direct SFT [95% CI]"]
    figure = lambda x: f"{x['macro_f1']:.3f} [{x['ci95'][0]:.2f}, {x['ci95'][1]:.2f}]"  # noqa: E731
    rows = []
    for point in results.get("label_budget", {}).get("points", []):
        m = point["methods"]
        d = point["rbft_minus_direct_sft"]
        rbft = figure(m["rbft"]) if "rbft" in m else "not trained (too few rationales passed)"
        rows.append([str(point["videos"]), str(m["direct_sft"]["seeds"]), figure(m["direct_sft"]), rbft,
                     delta_text(d) if d else ""])
    return head, rows


def focus_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Each method's attention focus: the label token's attention share in the boxes over their area share."""
    focus = results.get("attention", {}).get("focus") or {}
    return (["method", "focus (attention share in boxes / area share)"],
            [[NAMES.get(k, k), f"{v:.3f}"] for k, v in focus.items() if v is not None])
