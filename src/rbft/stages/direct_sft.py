"""Direct SFT, the baseline: the base model fine-tuned on the labels with Stage II's exact settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rbft.data.manifest import VideoRecord
from rbft.runs import Run, stage_key
from rbft.stages.stage2 import label_finetune


def direct_sft(run: Run, seed: int, splits: dict[str, list[VideoRecord]], frames: Callable) -> None:
    """The stage: the baseline classifier for `seed` in `models/direct_sft/seed<k>`."""
    config = run.config

    def go(work: Path, dest: Path) -> None:
        label_finetune(config, config.model.name_or_path, splits["train"], splits["val"], frames, work, dest, seed,
                       run.log)

    run.training("direct_sft", seed, stage_key(config, "direct_sft", seed), go)
