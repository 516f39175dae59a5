"""Stage I: supervised fine-tuning on (video, P_rationale) -> rationale; yields M_inter.

The prompt is the label-free P_rationale even when the rationales were written with the
label stated (`label_hint`): the hint helps the writer, but the model must learn to find
the evidence without it, since nobody gives it the label in Stage II or at test time.
Rationales the filter rejected are not trained on. A LoRA M_inter is merged into its
base weights, so Stage II starts from a plain model folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rbft.config import ExperimentConfig
from rbft.data.collate import Example, VideoChatCollator
from rbft.errors import ConfigError
from rbft.modeling import load_model, load_processor, save_model
from rbft.prompts import rationale_prompt, system_prompt
from rbft.stages import process_state
from rbft.training import TrainSettings, train


def stage1_examples(config: ExperimentConfig, rationales: Sequence[dict]) -> list[Example]:
    """(video, P_rationale) -> rationale for every kept record."""
    prompt, system = rationale_prompt(config.task), system_prompt(config.task)
    return [Example(r["id"], Path(r["video"]), prompt, r["rationale"], system) for r in rationales
            if not r.get("rejected")]


def stage1(config: ExperimentConfig, rationales: Sequence[dict], frames: Callable, work: Path, out: Path,
           seed: int) -> Path:
    """Train the base model on the rationales (checkpoints in `work`); write M_inter to `out`."""
    examples = stage1_examples(config, rationales)
    if not examples:
        raise ConfigError("Stage I has no rationale to train on: every record was rejected or failed "
                          "(see rationales_summary.json; lower rationales.min_words or change the source)")
    m = config.model
    processor = load_processor(m.name_or_path, m.trust_remote_code)
    model = load_model(m.name_or_path, m.dtype, m.attn_implementation, m.trust_remote_code)
    settings = TrainSettings.of(config.training, config.training.stage1, seed)
    trained = train(model, VideoChatCollator(processor, frames), examples, work, settings)
    state = process_state()
    if state.is_main_process:  # one writer; the others wait for the folder
        save_model(trained, processor, out, merge=True)
    state.wait_for_everyone()
    return out
