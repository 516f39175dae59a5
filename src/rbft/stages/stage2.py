"""Stage II: supervised fine-tuning on (video, P_label) -> <label>, from M_inter; yields M*.

Direct SFT (`rbft.stages.direct_sft`) is `label_finetune` started from the base model,
so the baseline gets exactly Stage II's settings and budget. With a val split and
`training.select_best`, the epoch with the best val macro-F1 (by label scoring) is kept (when the val split
holds `training.select_min_val` videos of every label); with
`eval.calibration: prior` the kept model's val scores then choose its calibration
(`rbft.calibration`), which the classifier's folder keeps for eval, `rbft predict` and `rbft serve`.
Labels are plain text in angle brackets (`<abnormal>`), not added tokens: every method
and every model family then scores the same strings with an unchanged vocabulary, and the
zero-shot model is asked for the very reply the fine-tuned ones learnt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from accelerate.utils import gather_object
from sklearn.metrics import f1_score

from rbft import calibration as cal
from rbft.config import ExperimentConfig
from rbft.data.manifest import VideoRecord
from rbft.errors import ConfigError
from rbft.modeling import load_for_videos, save_model
from rbft.predict import write_task
from rbft.prompts import label_examples, label_target
from rbft.runs import Run, by_main, process_state, stage_key
from rbft.scoring import label_logprobs
from rbft.training import train


def stage2(run: Run, seed: int, splits: dict[str, list[VideoRecord]], frames: Callable) -> None:
    """The stage: M* for `seed` in `models/rbft/seed<k>`, M_inter of the same seed fine-tuned on the labels."""
    config = run.config

    def go(work: Path, dest: Path) -> None:
        if not run.is_done(f"stage1-seed{seed}", stage_key(config, "stage1", seed)):
            raise ConfigError(f"stage2 (seed {seed}) starts from Stage I's model, which is not done with these "
                              "settings: run `rbft run CONFIG` (or --only stage1) first")
        label_finetune(config, run.model_dir("stage1", seed), splits["train"], splits["val"], frames, work, dest, seed,
                       run.log)

    run.training("stage2", seed, stage_key(config, "stage2", seed), go)


def val_macro_f1(config: ExperimentConfig, collator, val: Sequence[VideoRecord]) -> Callable:
    """A function of the model: its macro-F1 on `val` by label scoring, the same on every process.

    Each process scores its share of `val` (as many videos each, the last share padded with the
    first videos, so a sharded model's processes run the same forwards), and all share the predictions.
    """
    labels = list(config.task.labels)
    examples = label_examples(config.task, val)
    targets = [label_target(x) for x in labels]

    def score(model) -> float:
        state = process_state()
        share = math.ceil(len(examples) / state.num_processes)
        mine = [(state.process_index * share + k) % len(examples) for k in range(share)]
        scores = label_logprobs(model, collator, [examples[i] for i in mine], targets, config.eval.batch_size)
        predicted = dict(gather_object([(i, int(row.argmax())) for i, row in zip(mine, scores)]))
        return float(f1_score([v.label for v in val], [labels[predicted[i]] for i in range(len(val))], labels=labels,
                              average="macro", zero_division=0))

    return score


def calibrated(config: ExperimentConfig, model, collator, train_videos: Sequence[VideoRecord],
               val_videos: Sequence[VideoRecord]) -> cal.Calibration:
    """The trained classifier's calibration: chosen on its val scores (`eval.calibration: prior`), else none."""
    labels = list(config.task.labels)
    prior, val = cal.log_prior([v.label for v in train_videos], labels), [v.label for v in val_videos]
    if config.eval.calibration == "none":
        return cal.none(len(labels))
    if why := cal.unusable(val, labels, config.eval.calibration_min_val):
        return cal.Calibration(0.0, prior, why=why)
    scores = label_logprobs(model, collator, label_examples(config.task, val_videos),
                            [label_target(x) for x in labels], config.eval.batch_size)
    return cal.choose(scores, val, labels, prior, config.eval.calibration_min_val)


def selects(config: ExperimentConfig, val_videos: Sequence[VideoRecord], log: Callable[[str], None] = print) -> bool:
    """Whether the label stages keep their best epoch by val macro-F1: `training.select_best`, and a val split with
    `training.select_min_val` videos of every label (else it says why the last epoch is kept)."""
    t = config.training
    if not (val_videos and t.select_best):
        return False
    why = cal.unusable([v.label for v in val_videos], list(config.task.labels), t.select_min_val,
                       "choose an epoch on", "training.select_min_val")
    if why:
        log(f"keeping the last epoch: {why}")
    return why is None


def label_finetune(config: ExperimentConfig, start: str | Path, train_videos: Sequence[VideoRecord],
                   val_videos: Sequence[VideoRecord], frames: Callable, work: Path, out: Path, seed: int,
                   log: Callable[[str], None] = print) -> Path:
    """Fine-tune the model at `start` on the labels (checkpoints in `work`); write the classifier to `out`."""
    m, t = config.model, config.training
    model, collator = load_for_videos(start, frames, m.dtype, m.attn_implementation, m.trust_remote_code,
                                      training=True)
    select = val_macro_f1(config, collator, val_videos) if selects(config, val_videos, log) else None
    trained = train(model, collator, label_examples(config.task, train_videos), work, t, t.stage2, seed,
                    balance=t.balance, select=select)

    def write() -> None:
        save_model(trained, collator.processor, out, merge=False)
        write_task(config, out, calibrated(config, trained, collator, train_videos, val_videos))

    by_main(write)
    return out
