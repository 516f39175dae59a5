"""The run's report: `report.html` (one self-contained file: figures inlined, no script) and `report.md`.

Everything comes from the run folder, nothing is recomputed: `results.json` (methods with
their spread over seeds, RB-FT minus direct SFT with its interval and paired test,
ablations, attention focus), the training logs, the attention figures, the rationales
(a gallery beside their frames, rejected ones with why), `errors.jsonl`, the config and
the stages' timings. The tables are `rbft.results`' (the CLI prints the same ones);
Markdown gets them too, its figures as PNG files in `report_files/`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rbft.data.jsonl import read_jsonl  # noqa: E402
from rbft.errors import ConfigError  # noqa: E402
from rbft.metrics import collapsed  # noqa: E402
from rbft.results import (NAMES, ablation_lines, budget_table, comparison_lines, focus_table,  # noqa: E402
                          method_table, representation_table)
from rbft.runs import Run, report_key  # noqa: E402

FILES = "report_files"
GALLERY = 6  # rationales shown beside their frames, and as many rejected ones


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _per_class_chart(results: dict) -> bytes:
    labels, methods = results["labels"], list(results["methods"].items())
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(labels), 3.2))
    width = 0.8 / len(methods)
    for k, (name, m) in enumerate(methods):
        spread = m["over_seeds"]["per_class_f1"]
        ax.bar(np.arange(len(labels)) + k * width, [spread[x]["mean"] for x in labels], width,
               yerr=[spread[x]["std"] for x in labels], capsize=3, label=NAMES.get(name, name))
    ax.set_xticks(np.arange(len(labels)) + width * (len(methods) - 1) / 2,
                  [f"{x}\n(n={results['methods'][methods[0][0]]['per_class'][x]['support']})" for x in labels])
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (mean ± std over seeds)")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _confusions(results: dict) -> bytes:
    labels, methods = results["labels"], list(results["methods"].items())
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.3), squeeze=False,
                             constrained_layout=True)
    for ax, (name, m) in zip(axes[0], methods):
        matrix = np.asarray(m["confusion_matrix"])
        ax.imshow(matrix, cmap="viridis")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v < matrix.max() / 2 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_title(NAMES.get(name, name) + (" (seeds summed)" if len(m["per_seed"]) > 1 else ""), fontsize=9)
    axes[0][0].set_ylabel("truth")
    return _png(fig)


def _budget_chart(results: dict) -> bytes:
    """Macro-F1 against the number of labelled videos, both fine-tuned methods (RB-FT where it was trained) with
    their 95% intervals."""
    curve = results["label_budget"]
    videos = [p["videos"] for p in curve["points"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k, (name, colour) in enumerate((("direct_sft", "tab:blue"), ("rbft", "tab:orange"))):
        if not all(name in p["methods"] for p in curve["points"]):
            continue
        mean = np.array([p["methods"][name]["macro_f1"] for p in curve["points"]])
        low, high = (np.array([p["methods"][name]["ci95"][i] for p in curve["points"]]) for i in (0, 1))
        x = np.array(videos) * (1 + 0.03 * (2 * k - 1))  # apart, so the intervals do not hide each other
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, color=colour, label=NAMES[name])
    if curve.get("zero_shot_macro_f1") is not None:
        ax.axhline(curve["zero_shot_macro_f1"], color="grey", linestyle=":", label="zero-shot")
    ax.axhline(curve["majority_macro_f1"], color="black", linestyle="--", linewidth=0.8, label="majority label always")
    ax.set_xscale("log", base=2)
    ax.set_xticks(videos, [str(v) for v in videos])
    ax.set_xlabel("labelled training videos")
    ax.set_ylabel("test macro-F1")
    ax.set_title("Label budget (mean over seeds, 95% CI over test videos)")
    ax.legend(fontsize=8)
    return _png(fig)


def _curves(run: Path) -> bytes | None:
    logs = {stage: sorted((run / "train" / stage).glob("seed*/train_log.jsonl"))
            for stage in ("stage1", "stage2", "direct_sft")}
    logs = {stage: paths for stage, paths in logs.items() if paths}
    if not logs:
        return None
    fig, axes = plt.subplots(1, len(logs), figsize=(4.2 * len(logs), 3.0), squeeze=False, constrained_layout=True)
    titles = {"stage1": "Stage I (rationales)", "stage2": "Stage II (labels)", "direct_sft": "direct SFT (labels)"}
    for ax, (stage, paths) in zip(axes[0], logs.items()):
        twin = None
        for k, path in enumerate(paths):
            log = read_jsonl(path)
            rows = [r for r in log if "loss" in r]
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=f"C{k}", label=path.parent.name)
            val = [r for r in log if "val_score" in r]
            if val:
                if twin is None:
                    twin = ax.twinx()
                    twin.set_ylim(0, 1)
                    twin.set_ylabel("val macro-F1 (dashed)", fontsize=7)
                twin.plot([r["step"] for r in val], [r["val_score"] for r in val], "o--", color=f"C{k}", markersize=3)
        ax.set_title(titles[stage], fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(frameon=False, fontsize=7)
    return _png(fig)


def _strip(frames: np.ndarray, count: int = 4) -> bytes:
    rows = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    fig, axes = plt.subplots(1, len(rows), figsize=(1.3 * len(rows), 1.4))
    for ax, row in zip(np.atleast_1d(axes), rows):
        ax.imshow(frames[row])
        ax.axis("off")
    return _png(fig)


def _gallery(run: Path, frames: Callable | None) -> list[dict]:
    records = read_jsonl(run / "rationales.jsonl")
    kept = [r for r in records if r.get("rationale") and not r.get("rejected")]
    rejected = [r for r in records if r.get("rejected")]
    chosen, seen = [], set()
    for r in kept:  # one of each label first, so the rare ones show
        if r.get("label") not in seen:
            chosen.append(r)
            seen.add(r.get("label"))
    chosen += [r for r in kept if r not in chosen][: GALLERY - len(chosen)]
    out = []
    for r in chosen[:GALLERY] + rejected[:GALLERY]:
        item = {"id": r["id"], "label": r.get("label"), "text": r.get("rationale") or "", "rejected": r.get("rejected")}
        if frames is not None:
            try:
                got = frames(Path(r["video"]))
                item["strip"] = _strip(getattr(got, "frames", got))
            except Exception as e:  # a video gone since: the text still shows  # noqa: BLE001
                item["missing"] = str(e)
        out.append(item)
    return out


def report(run: Run, frames: Callable | None) -> None:
    """The stage: report.html and report.md, unless they were written from these very results (whose timings
    it first brings up to date: the stages after eval's too)."""
    results, html_path = run.out / "results.json", run.out / "report.html"
    if not results.exists():
        raise ConfigError("report: no results.json in the run folder yet; run `rbft run CONFIG` first")
    run.add_results("timings", run.timings())

    def work() -> None:
        write_report(run.out, frames)
        run.log(f"report: {html_path}")

    run.stage("report", report_key(run.config, results), work, ("report.html",), aside=False, borrow=False,
              skipped=f"report: done with these results; {html_path}")


def write_report(run: Path, frames: Callable | None = None) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` in `run` from what the run wrote; returns their paths."""
    results = json.loads((run / "results.json").read_text())
    labels = results["labels"]
    config = (run / "config.yaml").read_text() if (run / "config.yaml").exists() else ""
    errors = read_jsonl(run / "errors.jsonl")
    summary = json.loads((run / "rationales_summary.json").read_text()) if (run / "rationales_summary.json").exists() else None
    figures = {"per_class": _per_class_chart(results), "confusion": _confusions(results)}
    curves = _curves(run)
    if curves:
        figures["curves"] = curves
    if results.get("label_budget", {}).get("points"):
        figures["label_budget"] = _budget_chart(results)
    attention = results.get("attention", {})
    for video in attention.get("videos", []):
        path = run / "attention" / f"{video}.png"
        if path.exists():
            figures[f"attention-{video}"] = path.read_bytes()
    gallery = _gallery(run, frames)
    files = run / FILES
    files.mkdir(exist_ok=True)
    for name, data in figures.items():
        (files / f"{name}.png").write_bytes(data)
    for item in gallery:
        if "strip" in item:
            (files / f"rationale-{item['id']}.png").write_bytes(item["strip"])
    timings = results.get("timings", {})
    html_path, md_path = run / "report.html", run / "report.md"
    html_path.write_text(_html(results, labels, figures, gallery, config, errors, summary, timings), encoding="utf-8")
    md_path.write_text(_markdown(results, labels, figures, gallery, errors, summary, timings), encoding="utf-8")
    return html_path, md_path


def _table(head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows) + "</table>")


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f2f2f2}img{max-width:100%}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.rationale{display:flex;gap:1em;border-top:1px solid #ddd;padding:.6em 0}.rationale pre{flex:1;margin:0;white-space:pre-wrap}
.rejected{color:#a00}"""


REPRESENTATIONS = ("A linear probe (logistic regression, class-balanced) fitted on the train videos' features of each "
                   "model (the last layer's state where the label is predicted; C chosen on val) and scored on the "
                   "test videos: how much of the task the model represents, whatever its label scores decide. A "
                   "rise from the base model to M_inter is Stage I changing what the model represents.")


def _html(results, labels, figures, gallery, config, errors, summary, timings) -> str:
    e = html.escape
    head, rows = method_table(results)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>rbft report</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>RB-FT report</h1><p>Test set: {results['methods']['zero_shot']['n'] if 'zero_shot' in results['methods'] else ''} "
             f"videos; seeds {e(', '.join(map(str, results['seeds'])))}; labels {e(', '.join(labels))}.</p>",
             "<h2>Methods</h2>", _table(head, rows)]
    if results.get("decisions"):
        parts.append(f"<p>Decisions: {e(results['decisions'])}.</p>")
    warnings = collapsed(results)
    if warnings:
        parts.append("<ul class=rejected>" + "".join(f"<li>{e(x)}</li>" for x in warnings) + "</ul>")
    comparison = comparison_lines(results) + ablation_lines(results)
    if comparison:
        parts.append("<h3>RB-FT minus direct SFT (paired, same test videos)</h3><ul>"
                     + "".join(f"<li>{e(x)}</li>" for x in comparison) + "</ul>")
    head, rows = representation_table(results)
    if rows:
        parts += ["<h2>What each model represents</h2>", f"<p>{e(REPRESENTATIONS)}</p>", _table(head, rows)]
    if "label_budget" in figures:
        parts += ["<h2>Label budget</h2>", _img(figures["label_budget"], "label-budget curve"),
                  _table(*budget_table(results))]
    parts += ["<h2>Per-class F1</h2>", _img(figures["per_class"], "per-class F1"),
              "<h2>Confusion matrices</h2>", _img(figures["confusion"], "confusion matrices")]
    if "curves" in figures:
        parts += ["<h2>Training curves</h2>", _img(figures["curves"], "training curves")]
    attention = results.get("attention", {})
    if attention:
        parts.append(f"<h2>Attention of the label token</h2><p>Layers: {e(str(attention.get('layers')))}.</p>")
        if "focus" in attention:
            parts.append(_table(*focus_table(results)))
        parts += [_img(data, name) for name, data in figures.items() if name.startswith("attention-")]
    parts.append("<h2>Rationales</h2>")
    if summary:
        parts.append(f"<p>{summary['records']} written, {summary['kept']} kept, {summary['rejected']} rejected; "
                     f"median {summary['words'].get('median', '')} words.</p>")
        if summary.get("rejected_by_reason"):
            parts.append(_table(["rejected because", "videos"], [[k, v] for k, v in summary["rejected_by_reason"].items()]))
    for item in gallery:
        status = (f'<p class=rejected>rejected: {e(item["rejected"])}</p>' if item["rejected"] else "")
        picture = _img(item["strip"], item["id"]) if "strip" in item else e(item.get("missing", ""))
        parts.append(f'<div class=rationale><div>{picture}<p>{e(item["id"])} ({e(str(item["label"]))})</p></div>'
                     f'<div style="flex:1">{status}<pre>{e(item["text"])}</pre></div></div>')
    parts.append(f"<h2>Dropped videos</h2><p>{len(errors)} unusable.</p>")
    if errors:
        parts.append(_table(["id", "kind", "message"], [[r["id"], r["kind"], r.get("message", "")] for r in errors]))
    if timings:
        parts += ["<h2>Timings</h2>", _table(["stage", "seconds"], [[k, v] for k, v in timings.items()])]
    parts += ["<h2>Config</h2>", f"<pre>{e(config)}</pre>", "</body></html>"]
    return "\n".join(parts)


def _markdown(results, labels, figures, gallery, errors, summary, timings) -> str:
    head, rows = method_table(results)

    def table(head, rows):
        cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"  # noqa: E731
        return "\n".join([cells(head), "|" + "---|" * len(head), *map(cells, rows)])

    parts = ["# RB-FT report", "", f"Seeds {', '.join(map(str, results['seeds']))}; labels {', '.join(labels)}.",
             "", "## Methods", "", table(head, rows), "",
             *([f"Decisions: {results['decisions']}.", ""] if results.get("decisions") else []),
             *(f"- **warning**: {x}" for x in collapsed(results)), ""]
    comparison = comparison_lines(results) + ablation_lines(results)
    if comparison:
        parts += ["### RB-FT minus direct SFT", "", *(f"- {x}" for x in comparison), ""]
    head, rows = representation_table(results)
    if rows:
        parts += ["## What each model represents", "", REPRESENTATIONS, "", table(head, rows), ""]
    if "label_budget" in figures:
        parts += ["## Label budget", "", f"![label-budget curve]({FILES}/label_budget.png)", "",
                  table(*budget_table(results)), ""]
    parts += ["## Figures", "", f"![per-class F1]({FILES}/per_class.png)", "",
              f"![confusion matrices]({FILES}/confusion.png)", ""]
    if "curves" in figures:
        parts += [f"![training curves]({FILES}/curves.png)", ""]
    attention = results.get("attention", {})
    if attention.get("focus"):
        parts += ["## Attention focus", "", table(*focus_table(results)), ""]
    parts += [f"![attention {name}]({FILES}/{name}.png)" for name in figures if name.startswith("attention-")]
    parts += ["", "## Rationales", ""]
    if summary:
        parts += [f"{summary['records']} written, {summary['kept']} kept, {summary['rejected']} rejected.", ""]
    for item in gallery:
        flag = f" — rejected: {item['rejected']}" if item["rejected"] else ""
        parts += [f"**{item['id']}** ({item['label']}){flag}", "", "```", item["text"], "```", ""]
    parts += ["## Dropped videos", "", f"{len(errors)} unusable.", ""]
    if errors:
        parts += [table(["id", "kind", "message"], [[r["id"], r["kind"], r.get("message", "")] for r in errors]), ""]
    if timings:
        parts += ["## Timings", "", table(["stage", "seconds"], [[k, v] for k, v in timings.items()]), ""]
    return "\n".join(parts)
