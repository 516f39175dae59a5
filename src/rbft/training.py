"""The one gateway to the trainer: Hugging Face `Trainer`, with LoRA through peft or full fine-tuning.

Pretraining the shipped base model, Stage I, Stage II and direct SFT all train here,
so they share batching, schedules, checkpointing and resume. `train` resumes from the
newest checkpoint in its output folder, so a killed run loses only the steps since.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import Dataset
from transformers import PreTrainedModel, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from rbft.config import StageConfig, TrainingConfig
from rbft.data.collate import Example
from rbft.errors import ConfigError

# projections of the language model that LoRA adapts by default (Qwen, Llama, SmolLM and kin)
TEXT_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_PREFIXES = ("visual.", "vision_tower.", "vision_model.", "model.visual.", "model.vision_tower.",
                   "model.vision_model.")


@dataclass
class TrainSettings:
    """Everything that decides one training run (the config's training block plus one stage's budget)."""

    epochs: float = 1.0
    learning_rate: float = 1e-4
    method: str = "lora"
    batch_size: int = 1
    gradient_accumulation: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None
    train_vision: bool = False
    seed: int = 0
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int | None = None  # None: a checkpoint at the end of every epoch
    extra: dict = field(default_factory=dict)  # passed on to TrainingArguments

    @classmethod
    def of(cls, training: TrainingConfig, stage: StageConfig, seed: int) -> "TrainSettings":
        return cls(epochs=stage.epochs, learning_rate=stage.learning_rate, method=training.method,
                   batch_size=training.batch_size, gradient_accumulation=training.gradient_accumulation,
                   warmup_ratio=training.warmup_ratio, weight_decay=training.weight_decay,
                   lr_scheduler=training.lr_scheduler, lora_r=training.lora_r, lora_alpha=training.lora_alpha,
                   lora_dropout=training.lora_dropout, target_modules=training.target_modules,
                   train_vision=training.train_vision, seed=seed)


class ExampleDataset(Dataset):
    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class _LossLog(TrainerCallback):
    """Appends every logged figure (loss, learning rate, epoch) to `train_log.jsonl`."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def is_vision(name: str) -> bool:
    return name.startswith(VISION_PREFIXES) or ".visual." in name or ".vision_tower." in name


def prepare(model: PreTrainedModel, settings: TrainSettings) -> PreTrainedModel:
    """Wrap in LoRA or unfreeze for full fine-tuning; freeze the vision tower unless asked to train it."""
    if settings.method == "lora":
        names = {n for n, _ in model.named_modules()}
        wanted = settings.target_modules or list(TEXT_PROJECTIONS)
        found = {w for w in wanted if any(n.endswith("." + w) or n == w for n in names)}
        if missing := sorted(set(wanted) - found):
            raise ConfigError(f"training.target_modules: {missing} not found in {type(model).__name__}; "
                              f"choose among module names such as {sorted(TEXT_PROJECTIONS)}")
        targets = [n for n in names if n.rsplit(".", 1)[-1] in found and (settings.train_vision or not is_vision(n))]
        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                            target_modules=targets, task_type="CAUSAL_LM")
        return get_peft_model(model, config)
    for name, param in model.named_parameters():
        param.requires_grad = settings.train_vision or not is_vision(name)
    return model


def train(model: PreTrainedModel, collator, examples: Sequence[Example], out: str | Path,
          settings: TrainSettings, eval_examples: Sequence[Example] | None = None,
          callbacks: Sequence[TrainerCallback] = ()) -> PreTrainedModel:
    """Fine-tune `model` on `examples`; checkpoints and `train_log.jsonl` go to `out`. Returns the model."""
    if not examples:
        raise ConfigError("nothing to train on: the training split is empty (check the manifest's splits)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = prepare(model, settings)
    gpu = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation, learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio, weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler, logging_steps=settings.logging_steps, seed=settings.seed,
        data_seed=settings.seed, save_strategy="steps" if settings.save_steps else "epoch",
        save_steps=settings.save_steps or 500, save_total_limit=2, eval_strategy="epoch" if eval_examples else "no",
        remove_unused_columns=False, report_to="none", use_cpu=not gpu,
        bf16=gpu and torch.cuda.is_bf16_supported(), activation_checkpointing=settings.gradient_checkpointing,
        dataloader_num_workers=0, disable_tqdm=True, **settings.extra)
    trainer = Trainer(model=model, args=args, train_dataset=ExampleDataset(examples),
                      eval_dataset=ExampleDataset(eval_examples) if eval_examples else None,
                      data_collator=collator, callbacks=[_LossLog(out / "train_log.jsonl"), *callbacks])
    trainer.remove_callback(PrinterCallback)  # progress goes to train_log.jsonl and the caller's callbacks
    trainer.train(resume_from_checkpoint=get_last_checkpoint(args.output_dir))
    return trainer.model
