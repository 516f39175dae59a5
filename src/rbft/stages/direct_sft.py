"""Direct SFT, the baseline: the base model fine-tuned on the labels with Stage II's exact settings."""

from __future__ import annotations

from pathlib import Path

from rbft.config import ExperimentConfig
from rbft.stages.stage2 import label_finetune


def direct_sft(config: ExperimentConfig, train_videos, val_videos, frames, work: Path, out: Path, seed: int) -> Path:
    return label_finetune(config, config.model.name_or_path, train_videos, val_videos, frames, work, out, seed)
