"""The one gateway to the trainer: Hugging Face `Trainer`, with LoRA through peft or full fine-tuning.

Pretraining the shipped base model, Stage I, Stage II and direct SFT all train here,
so they share batching, schedules, checkpointing and resume. `train` resumes from the
newest checkpoint in its output folder, so a killed run loses only the steps since.
"""

from __future__ import annotations

import gc
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from accelerate.utils import parse_flag_from_env
from torch.utils.data import Dataset
from transformers import PreTrainedModel, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from rbft.balance import BalancedSampler, StratifiedSampler, WeightedCollator, balanced_weights
from rbft.config import ExperimentConfig, StageConfig, TrainingConfig
from rbft.data.collate import IGNORE
from rbft.data.conversation import Example
from rbft.errors import ConfigError
from rbft.modeling import is_vision, loaded_dtype, lora_targets, mixed_precision, model_skeleton, rebuilt
from rbft.runs import agree, process_state
from rbft.scoring import keeps_logits


def reporters(report_to: str | list[str]) -> list[str]:
    """`auto`: TensorBoard and W&B where installed (W&B only when logged in); else the list as given."""
    if report_to != "auto":
        return list(report_to)
    import importlib.util
    import os

    found = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    if importlib.util.find_spec("wandb") and os.environ.get("WANDB_API_KEY"):
        found.append("wandb")
    return found


class ExampleDataset(Dataset):
    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


class _BestByMetric(TrainerCallback):
    """At each epoch's end, score the model with `select` (higher is better) and keep the best epoch's
    trainable weights in `best.safetensors` (with `best.json`), so a resumed run still knows them.

    A tiny set trained for many epochs (`min_steps`) is scored at most `CHECKS` times, evenly, and
    after its last epoch: scoring is then the larger part of the cost. Every process scores (its
    share, `select` knows how) and takes part in gathering weights that DeepSpeed ZeRO-3 or FSDP shard.
    """

    CHECKS = 6

    def __init__(self, select, out: Path):
        self.select, self.out, self.trainer = select, out, None

    def best(self) -> dict | None:
        path = self.out / "best.json"
        return json.loads(path.read_text()) if path.exists() else None

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        every = math.ceil(math.ceil(state.num_train_epochs) / self.CHECKS)
        if round(state.epoch) % every and state.global_step < state.max_steps:
            return
        score = float(self.select(model))  # the same on every process
        model.train()
        best = self.best() if state.is_world_process_zero else None
        better = best is None or score > best["score"]
        weights = trainable_weights(self.trainer) if agree(better) else None
        if state.is_world_process_zero:
            with open(self.out / "train_log.jsonl", "a") as f:
                f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, "val_score": score}) + "\n")
            if better:
                save_file(weights, str(self.out / "best.safetensors"))
                (self.out / "best.json").write_text(json.dumps({"score": score, "epoch": state.epoch,
                                                                "step": state.global_step}) + "\n")

    def weights(self) -> dict[str, torch.Tensor] | None:
        """The best epoch's trainable weights, if one was kept."""
        return load_file(str(self.out / "best.safetensors")) if self.best() is not None else None


def sharded(trainer: Trainer) -> bool:
    """Whether the trainer's model is sharded over the processes (DeepSpeed ZeRO-3, FSDP): its parameters then hold
    each process's shard only, and the whole model must be gathered to be scored whole or saved."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(trainer.is_fsdp_enabled or (trainer.is_deepspeed_enabled and is_deepspeed_zero3_enabled()))


def trainable_weights(trainer: Trainer) -> dict[str, torch.Tensor] | None:
    """The model's trainable weights on the CPU, in the dtype it was loaded in (LoRA's own kept as they are), on
    the main process; None elsewhere. Every process must call it: a sharded model's weights are gathered from all."""
    model = trainer.model
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped) if sharded(trainer) else dict(
        model.named_parameters())
    if not trainer.accelerator.is_main_process:
        return None
    cast = loaded_dtype(model)
    return {n: t.detach().to("cpu", cast if cast is not None and t.is_floating_point() else t.dtype).contiguous()
            for n, t in state.items() if n in names}


class _Trainer(Trainer):
    """HF Trainer, resuming full-model checkpoints through `from_pretrained`, and balancing labels when asked:
    drawing them equally often (`balance="sample"`), and in every batch (`"batch"`), or weighting each example's
    loss (`"loss"`, with `WeightedCollator`'s batches).

    Checkpoints are written with the architecture's on-disk key names (transformers 5
    renames some modules in memory, e.g. `model.language_model.*`); Trainer's own resume
    loads them with `load_state_dict(strict=False)`, which then silently loads nothing.
    `from_pretrained` knows the renaming, so the weights go through it.
    """

    def __init__(self, *args, balance: str = "none", **kwargs):
        super().__init__(*args, **kwargs)
        self.balance = balance

    def _get_train_sampler(self, train_dataset=None):
        if self.balance not in ("sample", "batch"):
            return super()._get_train_sampler(train_dataset)
        examples = (train_dataset or self.train_dataset).examples
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        if self.balance == "batch":
            return StratifiedSampler(examples, seed)
        return BalancedSampler(balanced_weights(examples), seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss on the replies' tokens, each row's weighted when the batch has `weight` (`balance: loss`),
        normalised as the Trainer's own loss is. The output layer runs only from the first column that predicts a
        reply token (`logits_to_keep`): a label's reply is the last few of some 450 columns, and the output layer
        with its softmax over the vocabulary would otherwise take every column."""
        # the Trainer's (the model's) own loss where this one does not apply: labels that are not one a token (the
        # vision warm-up's classifier), label smoothing, a custom loss, a router's auxiliary loss
        per_token = "input_ids" in inputs and inputs["labels"].shape == inputs["input_ids"].shape
        if "weight" not in inputs and (not per_token or self.label_smoother or self.compute_loss_func or getattr(
                getattr(self.model, "config", None), "output_router_logits", False)):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        weight, labels = inputs.pop("weight", None), inputs.pop("labels")
        replies = (labels != IGNORE).any(0).nonzero()
        keep = ({"logits_to_keep": labels.shape[1] - int(replies[0]) + 1}
                if len(replies) and keeps_logits(self.model) else {})
        outputs = model(**inputs, **keep)
        logits = outputs.logits[:, :-1].float()
        wanted = labels[:, labels.shape[1] - logits.shape[1]:]  # the token each kept column predicts
        tokens = torch.nn.functional.cross_entropy(logits.transpose(1, 2), wanted, ignore_index=IGNORE,
                                                   reduction="none")  # (rows, positions), 0 where ignored
        per_row = tokens.sum(-1) * (weight.to(tokens.dtype) if weight is not None else 1)
        # as the Trainer's own loss: over the accumulated batches' tokens when it counted them, else this batch's
        # (the Trainer then divides by the accumulation steps itself)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = per_row.sum() / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        else:
            loss = per_row.sum() / (wanted != IGNORE).sum()
        return (loss, outputs) if return_outputs else loss

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = model or self.model
        folder = Path(resume_from_checkpoint)
        if hasattr(model, "peft_config") or not isinstance(model, PreTrainedModel) or not any(
                (folder / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json")):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(folder, dtype=torch.float32)  # exact for weights trained in float32 too
        model.load_state_dict(saved.state_dict(), strict=True)
        del saved


class _LossLog(TrainerCallback):
    """Appends every logged figure (loss, learning rate, epoch) to `train_log.jsonl`."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def check_settings(config: ExperimentConfig) -> None:
    """Refuse, before any work, a training config the model cannot take (e.g. LoRA on modules it lacks)."""
    t = config.training
    if t.method == "lora" or t.attention_dropout is not None:
        skeleton = model_skeleton(config.model.name_or_path, config.model.trust_remote_code)
        if t.method == "lora":
            lora_targets(skeleton, t.target_modules, t.train_vision)
        if t.attention_dropout is not None:
            set_attention_dropout(skeleton, t.attention_dropout)


def prepare(model: PreTrainedModel, training: TrainingConfig, stage: StageConfig | None = None) -> PreTrainedModel:
    """Wrap in LoRA or unfreeze for full fine-tuning; freeze the vision tower unless asked to train it, and the
    token embeddings (with an output layer tied to them) when `stage.freeze_embeddings`.

    Fully fine-tuned weights loaded in bfloat16 or float16 are trained in float32 (autocast still runs the
    forward in half precision): updates of 1e-5 to 1e-6 round away in bfloat16's 8-bit mantissa. Not under
    DeepSpeed, which keeps float32 master weights itself. (peft keeps LoRA's own weights in float32.)
    `training.attention_dropout`, when set, replaces the dropout of every attention layer that has one
    (`attention_dropout`, read in training mode only), frozen layers included.
    """
    if training.attention_dropout is not None:
        set_attention_dropout(model, training.attention_dropout)
    if training.method == "lora":
        targets = lora_targets(model, training.target_modules, training.train_vision)
        config = LoraConfig(r=training.lora_r, lora_alpha=training.lora_alpha, lora_dropout=training.lora_dropout,
                            target_modules=targets, task_type="CAUSAL_LM")
        return get_peft_model(model, config)
    upcast = not parse_flag_from_env("ACCELERATE_USE_DEEPSPEED")
    frozen = {id(model.get_input_embeddings().weight)} if stage is not None and stage.freeze_embeddings else set()
    for name, param in model.named_parameters():
        param.requires_grad = (training.train_vision or not is_vision(name)) and id(param) not in frozen
        if upcast and param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
    return model


def set_attention_dropout(model: torch.nn.Module, p: float) -> None:
    """Set the attention dropout of every attention layer of `model` that has one to `p`. A model with none is
    refused: the setting would silently do nothing."""
    layers = [m for m in model.modules() if type(getattr(m, "attention_dropout", None)) in (float, int)]
    if not layers:
        raise ConfigError(f"training.attention_dropout: {type(model).__name__} has no attention layer with an "
                          "`attention_dropout` to set; remove the setting")
    for layer in layers:
        layer.attention_dropout = float(p)


def arguments(training: TrainingConfig, stage: StageConfig, out: Path, seed: int, weights: torch.dtype,
              examples: int) -> TrainingArguments:
    """The trainer's arguments for `stage` over `examples` examples; `weights`: the dtype the model was loaded in."""
    gpu = torch.cuda.is_available()
    precision = mixed_precision(weights, gpu, gpu and torch.cuda.is_bf16_supported())
    workers = training.dataloader_workers
    if workers is None:  # on a GPU, frames, the processor and chat templates are prepared while it computes
        workers = min(4, (os.cpu_count() or 1) // process_state().num_processes) if gpu else 0
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=stage.epochs,
        per_device_train_batch_size=training.batch_size, per_device_eval_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation, learning_rate=stage.learning_rate,
        warmup_steps=training.warmup_ratio, weight_decay=training.weight_decay,
        lr_scheduler_type=training.lr_scheduler, logging_steps=training.logging_steps, seed=seed,
        data_seed=seed, save_strategy="no" if training.checkpoints == "none" else
        "steps" if training.save_steps else "epoch", save_steps=training.save_steps or 500,
        save_total_limit=1,  # the newest: a full fine-tuning checkpoint holds the optimizer's state too
        remove_unused_columns=False, use_cpu=not gpu, bf16=precision == "bf16", fp16=precision == "fp16",
        activation_checkpointing=training.gradient_checkpointing, report_to=reporters(training.report_to) or "none",
        dataloader_num_workers=workers, dataloader_persistent_workers=workers > 0, dataloader_pin_memory=gpu,
        ddp_timeout=training.process_timeout_s, disable_tqdm=True)
    per_epoch = math.ceil(math.ceil(examples / (args.train_batch_size * args.world_size))
                          / args.gradient_accumulation_steps)
    if stage.min_steps > stage.epochs * per_epoch:  # a tiny set: more epochs, up to the minimum
        args.max_steps = stage.min_steps
    return args


def train(model: PreTrainedModel, collator, examples: Sequence[Example], out: str | Path, training: TrainingConfig,
          stage: StageConfig, seed: int = 0, *, balance: str = "none", eval_examples: Sequence[Example] | None = None,
          callbacks: Sequence[TrainerCallback] = (), select=None) -> PreTrainedModel | None:
    """Fine-tune `model` on `examples` as `training` says, for `stage`'s budget; checkpoints and
    `train_log.jsonl` go to `out`. Returns the model (every process must call it).

    `balance="sample"` draws every distinct reply (a label) equally often, `"batch"` equally often in every batch,
    `"loss"` weights each example's loss so that every reply weighs the same (the label stages pass
    `training.balance`). With `select(model) -> score` the model is scored after every epoch and
    the best epoch's weights are the ones returned (`out/best.json` says which); without it, the last ones.
    A model that DeepSpeed ZeRO-3 or FSDP sharded is returned whole, on the main process only (None on
    the others). The trainer, its optimizer and engine are freed before it returns.
    """
    if not examples:
        raise ConfigError("nothing to train on: the training split is empty (check the manifest's splits)")
    _collect()  # what an earlier training of this process left, before this one takes its memory
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = loaded_dtype(model) or next(model.parameters()).dtype
    model = prepare(model, training, stage)
    args = arguments(training, stage, out, seed, loaded, len(examples))
    best = _BestByMetric(select, out) if select else None
    trainer = _Trainer(model=model, args=args, train_dataset=ExampleDataset(examples), balance=balance,
                      eval_dataset=ExampleDataset(eval_examples) if eval_examples else None,
                      data_collator=WeightedCollator(collator, examples) if balance == "loss" else collator,
                      callbacks=[_LossLog(out / "train_log.jsonl"), *([best] if best else []), *callbacks])
    trainer.remove_callback(PrinterCallback)  # progress goes to train_log.jsonl and the caller's callbacks
    if best:
        best.trainer = trainer
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)  # every process looks in it, whoever made it
    trainer.train(resume_from_checkpoint=get_last_checkpoint(args.output_dir))
    try:
        return _finished(trainer, best)
    finally:
        _free(trainer, best)


def _finished(trainer: Trainer, best: _BestByMetric | None) -> PreTrainedModel | None:
    """The trained model holding the kept weights (the best epoch's, or the last): in place, or, when sharded,
    whole again on the main process from the gathered weights (None on the others)."""
    kept = best.weights() if best else None
    if not sharded(trainer):
        model = trainer.model
        model.__dict__.pop("_original_forward", None)  # accelerate's autocast wrapper: a bound method in the model's
        model.__dict__.pop("forward", None)            # own __dict__, which would keep it alive until a gc pass
        if kept is not None:
            missing = set(kept) - {n for n, _ in trainer.model.named_parameters()}
            assert not missing, f"best weights do not fit the model: {sorted(missing)[:3]}"
            with torch.no_grad():
                for name, param in trainer.model.named_parameters():
                    if name in kept:
                        param.copy_(kept[name])
        return trainer.model
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # every process takes part
    if not trainer.accelerator.is_main_process:
        return None
    state.update(kept or {})
    return rebuilt(trainer.model, state)


def _free(trainer: Trainer, best: _BestByMetric | None) -> None:
    """Let go of the trainer's optimizer, scheduler, engine and wrappers, so the next training of this process
    (seeds, stages, ablations, label-budget points) starts with the memory the first one had."""
    trainer.accelerator.free_memory()
    trainer.optimizer = trainer.lr_scheduler = trainer.model_wrapped = trainer.deepspeed = None
    trainer.callback_handler.callbacks.clear()
    if best:
        best.trainer = None
    _collect()


def _collect() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
