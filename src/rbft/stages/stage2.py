"""Stage II: supervised fine-tuning on (video, P_label) -> <label>, from M_inter; yields M*.

Direct SFT (`rbft.stages.direct_sft`) is this same function started from the base model,
so the baseline gets exactly Stage II's settings and budget. With a val split and
`training.select_best`, the epoch with the best val macro-F1 (by label scoring) is kept.
Labels are plain text in angle brackets (`<abnormal>`), not added tokens: every method
and every model family then scores the same strings with an unchanged vocabulary, and the
zero-shot model is asked for the very reply the fine-tuned ones learnt.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from sklearn.metrics import f1_score

from rbft.config import ExperimentConfig, TaskConfig
from rbft.data.collate import Example, VideoChatCollator
from rbft.data.manifest import VideoRecord
from rbft.modeling import load_model, load_processor, save_model
from rbft.prompts import label_prompt, label_target, system_prompt
from rbft.scoring import label_logprobs
from rbft.stages import process_state
from rbft.training import TrainSettings, train


def label_examples(task: TaskConfig, videos: Sequence[VideoRecord]) -> list[Example]:
    """(video, P_label) -> `<label>` with the persona; a video without a label (scoring only) gets no target."""
    prompt, system = label_prompt(task), system_prompt(task)
    return [Example(v.id, v.video, prompt, label_target(v.label) if v.label else "", system) for v in videos]


def val_macro_f1(config: ExperimentConfig, collator, val: Sequence[VideoRecord]) -> Callable:
    """A function of the model: its macro-F1 on `val` by label scoring."""
    labels = list(config.task.labels)
    examples = label_examples(config.task, val)

    def score(model) -> float:
        scores = label_logprobs(model, collator, examples, [label_target(x) for x in labels])
        predicted = [labels[i] for i in scores.argmax(1)]
        return float(f1_score([v.label for v in val], predicted, labels=labels, average="macro", zero_division=0))

    return score


TASK_FILE = "rbft_task.json"


def write_task(config: ExperimentConfig, model_dir: Path) -> None:
    """What `rbft predict` needs beside the weights: the task (persona, question, labels) and the frame sampling."""
    (model_dir / TASK_FILE).write_text(json.dumps({"task": config.task.model_dump(),
                                                   "data": config.data.model_dump(mode="json")}, indent=2) + "\n")


def label_finetune(config: ExperimentConfig, start: str | Path, train_videos: Sequence[VideoRecord],
                   val_videos: Sequence[VideoRecord], frames: Callable, work: Path, out: Path, seed: int) -> Path:
    """Fine-tune the model at `start` on the labels (checkpoints in `work`); write the classifier to `out`."""
    m = config.model
    processor = load_processor(start, m.trust_remote_code)
    model = load_model(start, m.dtype, m.attn_implementation, m.trust_remote_code)
    collator = VideoChatCollator(processor, frames)
    select = val_macro_f1(config, collator, val_videos) if val_videos and config.training.select_best else None
    settings = TrainSettings.of(config.training, config.training.stage2, seed, config.training.balance)
    trained = train(model, collator, label_examples(config.task, train_videos), work, settings, select=select)
    state = process_state()
    if state.is_main_process:  # one writer; the others wait for the folder
        save_model(trained, processor, out, merge=False)
        write_task(config, out)
    state.wait_for_everyone()
    return out


def stage2(config: ExperimentConfig, m_inter: Path, train_videos, val_videos, frames, work: Path, out: Path,
           seed: int) -> Path:
    """M* = M_inter fine-tuned on the labels."""
    return label_finetune(config, m_inter, train_videos, val_videos, frames, work, out, seed)
