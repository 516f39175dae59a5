"""Evaluation: every method on the same test videos, and the comparison.

Label scoring (the default): the log-probability of each label's full target (`<abnormal>`)
as the reply to the video and P_label; the prediction is the argmax, so nothing fails to
parse. Free generation (`eval.mode: generate`): the model's greedy reply, read by
`prompts.parse_label`; a reply naming no label counts as wrong and the parse-failure rate
is reported. Each video's scores or reply go to `predictions/<method>[-seed<k>].jsonl`;
`results.json` holds the figures of DESIGN.md (`rbft.results`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from rbft.config import ExperimentConfig, TaskConfig
from rbft.data.jsonl import write_jsonl
from rbft.data.manifest import VideoRecord
from rbft.errors import ConfigError
from rbft.generation import generate
from rbft.modeling import load_for_videos
from rbft.prompts import label_examples, parse_label
from rbft.results import summarize
from rbft.runs import Run, by_main, eval_key, stage_key
from rbft.scoring import label_scores


def evaluate(run: Run, splits: dict[str, list[VideoRecord]], frames: Callable, zero_shot: bool = True,
             refused: str | None = None) -> dict:
    """The stage: zero-shot (unless an ablation's run), direct SFT and RB-FT of every seed on the test split,
    each model's predictions scored once; writes and returns results.json. `refused`: why RB-FT was not
    trained (its rationales did not pass the filter); results.json says so instead of scoring it."""
    config, test = run.config, splits["test"]
    if not test or any(v.label is None for v in test):
        raise ConfigError(f"{config.data.manifest}: eval needs labelled test videos (split: test, with a label)")
    jobs = [("zero_shot", None, config.model.name_or_path, stage_key(config, "check"))] if zero_shot else []
    for seed in config.seeds:
        for method, stage in [("direct_sft", "direct_sft")] + ([] if refused else [("rbft", "stage2")]):
            trained = stage_key(config, stage, seed)
            if not run.is_done(f"{stage}-seed{seed}", trained):
                raise ConfigError(f"eval: {method} (seed {seed}) is not trained with these settings; run "
                                  "`rbft run CONFIG` without --only first")
            jobs.append((method, seed, run.model_dir(stage, seed), trained))
    methods: dict[str, list[Path]] = {}
    for method, seed, model, trained in jobs:
        name = method if seed is None else f"{method}-seed{seed}"
        output = f"predictions/{name}.jsonl"
        methods.setdefault(method, []).append(run.out / output)

        def work(model=model, output=output) -> None:
            write_predictions(config, model, test, frames, run.out / output)

        run.stage(f"eval-{name}", eval_key(config, trained, [v.id for v in test]), work, (output,), aside=False,
                  doing=f"eval: {name}")
    summary = {**summarize(list(config.task.labels), config.seeds, methods), "train_videos": len(splits["train"])}
    if refused:
        summary["refused"] = {"rbft": refused}
    summary["timings"] = run.timings()
    by_main(lambda: (run.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n"))
    return summary


def write_predictions(config: ExperimentConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
            out: Path) -> None:
    """Judge `videos` with the model at `model_dir` as `config.eval` says; write their predictions to `out`
    (label scoring: each label's score; generation: the reply, and `predicted` null when it did not parse)."""
    m, e, labels = config.model, config.eval, list(config.task.labels)
    if e.mode == "score":
        scores = label_scores(config.task, model_dir, videos, frames, m.dtype, m.attn_implementation,
                              m.trust_remote_code, e.batch_size)
        rows = [{"id": v.id, "label": v.label, "predicted": labels[int(row.argmax())],
                 "scores": {x: float(s) for x, s in zip(labels, row)}} for v, row in zip(videos, scores)]
    else:
        replies = label_replies(config.task, model_dir, videos, frames, m.dtype, m.trust_remote_code,
                                e.max_new_tokens, e.batch_size)
        rows = [{"id": v.id, "label": v.label, "predicted": parsed, "reply": reply}
                for v, (reply, parsed) in zip(videos, replies)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)


def label_replies(task: TaskConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                  dtype: str = "auto", trust_remote_code: bool = False, max_new_tokens: int = 32,
                  batch_size: int = 8) -> list[tuple[str, str | None]]:
    """Each video's free reply to P_label (greedy) and the label parsed from it (None: a parse failure)."""
    model, collator = load_for_videos(model_dir, frames, dtype, "sdpa", trust_remote_code)
    replies = generate(model, collator, label_examples(task, videos), max_new_tokens=max_new_tokens,
                       batch_size=batch_size)
    return [(reply, parse_label(reply, list(task.labels))) for reply in replies]
