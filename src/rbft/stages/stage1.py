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
from rbft.data.conversation import Example
from rbft.data.rationales import RationaleStore, summary, too_few_kept
from rbft.errors import ConfigError, RationalesRefused
from rbft.modeling import load_for_videos, save_model
from rbft.prompts import rationale_prompt, system_prompt
from rbft.runs import Run, by_main, stage_key
from rbft.stages.rationales import FILE, judged
from rbft.training import train


def stage1(run: Run, seed: int, frames: Callable) -> None:
    """The stage: M_inter for `seed` in `models/stage1/seed<k>`, from the run's rationales."""

    def go(work: Path, dest: Path) -> None:
        train_m_inter(run.config, _rationales(run), frames, work, dest, seed)

    run.training("stage1", seed, stage_key(run.config, "stage1", seed), go)


def _rationales(run: Run) -> list[dict]:
    """The run's rationale records with today's filter's verdicts."""
    return judged(run.config, list(RationaleStore(run.out / FILE).records.values()))


def refusal(run: Run) -> str | None:
    """Why Stage I will not train on the run's rationales (too few pass today's filter), or None."""
    if not (run.out / FILE).exists():
        return None
    return too_few_kept(summary(_rationales(run)), run.config.rationales.min_kept_share, run.config.rationales.source)


def stage1_examples(config: ExperimentConfig, rationales: Sequence[dict]) -> list[Example]:
    """(video, P_rationale) -> rationale for every kept record."""
    prompt, system = rationale_prompt(config.task), system_prompt(config.task)
    return [Example(r["id"], Path(r["video"]), prompt, r["rationale"], system) for r in rationales
            if not r.get("rejected")]


def train_m_inter(config: ExperimentConfig, rationales: Sequence[dict], frames: Callable, work: Path, out: Path,
                  seed: int) -> Path:
    """Train the base model on the rationales (checkpoints in `work`); write M_inter to `out`."""
    stop = too_few_kept(summary(rationales), config.rationales.min_kept_share, config.rationales.source)
    if stop:
        raise RationalesRefused(stop)
    examples = stage1_examples(config, rationales)
    if not examples:
        raise ConfigError("Stage I has no rationale to train on: every record was rejected or failed "
                          "(see rationales_summary.json; lower rationales.min_words or change the source)")
    m = config.model
    model, collator = load_for_videos(m.name_or_path, frames, m.dtype, m.attn_implementation, m.trust_remote_code,
                                      training=True)
    trained = train(model, collator, examples, work, config.training, config.training.stage1, seed)
    by_main(lambda: save_model(trained, collator.processor, out, merge=True))
    return out
