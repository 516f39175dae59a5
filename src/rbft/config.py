"""Typed experiment configs, loaded from YAML and validated with messages that name the key and file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rbft.errors import ConfigError
from rbft.sampling import FrameSampling


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    """The domain task: who judges, what is asked, and the labels with what each means."""

    name: str = Field(min_length=1)
    persona: str = Field(min_length=1)
    question: str = Field(min_length=1)
    labels: dict[str, str]

    @field_validator("labels")
    @classmethod
    def _two_or_more(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) < 2:
            raise ValueError("a task needs at least two labels")
        for label in labels:
            if not label or label != label.strip() or any(c in label for c in "<>\n"):
                raise ValueError(f"label {label!r} must be non-empty, without <, >, newlines or outer spaces")
        return labels


class DataConfig(_Strict):
    """Where the videos are and how frames are sampled from them."""

    manifest: Path
    num_frames: int | None = Field(default=8, ge=1)
    fps: float | None = Field(default=None, gt=0)
    max_frames: int = Field(default=32, ge=1)
    max_pixels: int | None = Field(default=360 * 420, ge=1)
    decode_workers: int = Field(default=0, ge=0, description="0: one per CPU core")
    train_limit: int | None = Field(default=None, ge=1, description="use only this many labelled training videos "
                                    "(each label's share kept, manifest order): the number-of-videos ablation")

    @model_validator(mode="after")
    def _one_rate(self) -> "DataConfig":
        if self.fps is not None and self.num_frames is not None and "num_frames" in self.model_fields_set:
            raise ValueError("set either num_frames or fps, not both")
        return self

    def sampling(self) -> FrameSampling:
        """The frame sampling these settings describe (fps, when set, replaces the default num_frames)."""
        num = None if self.fps is not None else self.num_frames
        return FrameSampling(num_frames=num, fps=self.fps, max_frames=self.max_frames, max_pixels=self.max_pixels)


class ModelConfig(_Strict):
    """The base model: a Hugging Face name or a local folder."""

    name_or_path: str = Field(min_length=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = "sdpa"
    trust_remote_code: bool = False


class StageConfig(_Strict):
    """Budget of one fine-tuning stage."""

    epochs: float = Field(default=3.0, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    min_steps: int = Field(default=0, ge=0, description="train at least this many optimizer steps (more epochs "
                           "when the set is tiny); 0: `epochs` alone decide")
    freeze_embeddings: bool = Field(default=False, description="full fine-tuning leaves the token embeddings (and an "
                                    "output layer tied to them) as they are; LoRA never trains them")


class TrainingConfig(_Strict):
    """How fine-tuning runs; stage2's settings are also direct SFT's, so the baseline gets the same budget.

    The one training schema: `rbft.training.train` takes it (with a `StageConfig` for the budget),
    whether for an experiment's stages or for the recipe of the shipped base model.
    """

    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = None
    train_vision: bool = False
    attention_dropout: float | None = Field(
        default=None, ge=0, lt=1, description="dropout on the attention weights while training, in every attention "
        "layer that has it (the language model's and the vision tower's, frozen or not): a regulariser for small "
        "sets; unset: the model's own (0 for most)")
    batch_size: int = Field(default=1, ge=1)
    gradient_accumulation: int = Field(default=8, ge=1)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.1, ge=0)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    gradient_checkpointing: bool = False
    save_steps: int | None = Field(default=None, ge=1, description="checkpoint every N steps (default: each epoch)")
    report_to: Literal["auto"] | list[str] = Field(
        default="auto", description="auto: TensorBoard / W&B where installed; or a list, [] for none")
    logging_steps: int = Field(default=10, ge=1)
    keep_checkpoints: bool = Field(default=False, description="keep a finished stage's checkpoints (large on "
                                   "real models; only a cut run needs them)")
    checkpoints: Literal["resumable", "none"] = Field(
        default="resumable", description="resumable: the newest checkpoint (weights and optimizer state: about "
        "14 bytes a parameter for full fine-tuning, 100 GB for a 7B model) is kept while a stage trains, so a cut "
        "run resumes; none: nothing is written while training (a cut stage starts over)")
    dataloader_workers: int | None = Field(default=None, ge=0, description="processes preparing batches (frames, "
                                           "processor, chat template) while the model trains; default: 0 on the "
                                           "CPU, up to 4 per GPU")
    process_timeout_s: int = Field(default=3 * 3600, ge=60, description="under accelerate launch: how long a "
                                   "process waits for the others (the main process alone checks the data, "
                                   "scores the models and writes the report) before the run fails")
    select_best: bool = Field(default=True, description="label stages keep the epoch with the best val macro-F1")
    select_min_val: int = Field(default=3, ge=0, description="val videos of every label that `select_best` needs; "
                                "with fewer, val macro-F1 cannot see that label and favours a model that never "
                                "answers it, so the last epoch is kept")
    balance: Literal["none", "sample", "batch", "loss"] = Field(
        default="sample", description="label stages (Stage II and direct SFT alike): sample: draw every label "
        "equally often (with replacement), for small imbalanced sets; batch: every label equally often in every "
        "batch (give or take one); loss: each video once an epoch, its loss "
        "weighted by its label's inverse share; none: each video once an epoch, unweighted")
    stage1: StageConfig = StageConfig()
    stage2: StageConfig = StageConfig(min_steps=100)  # a tiny label set still gets 100 steps


class RationaleConfig(_Strict):
    """Offline data construction: who writes the rationales, from which prompt, how, and which are kept."""

    source: Literal["self", "teacher", "scene", "file"] = Field(
        default="self", description="self: the base model; teacher: `teacher`; scene: the world's ground truth; "
        "file: rationales written elsewhere (`file`, e.g. the RB-FT authors' from `rbft data import`)")
    teacher: str | None = Field(default=None, description="a teacher model's folder or hub name (source: teacher)")
    file: Path | None = Field(default=None, description="source: file: a JSONL of records with `id` and "
                              "`rationale` (relative to the config file)")
    label_hint: bool = Field(default=True, description="state the video's label in the prompt, as the authors did")
    endpoint: str | None = Field(default=None, description="an OpenAI-compatible server's base URL, e.g. "
                                 "http://127.0.0.1:8000/v1; unset: generate in this process")
    endpoint_model: str | None = Field(default=None, description="the model name the server knows (default: "
                                       "the teacher's or the base model's name)")
    api_key_env: str = "OPENAI_API_KEY"
    max_new_tokens: int = Field(default=256, ge=1)
    batch_size: int = Field(default=8, ge=1)
    do_sample: bool = False
    temperature: float = Field(default=0.7, gt=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    retries: int = Field(default=3, ge=0)
    min_words: int = Field(default=12, ge=0)
    min_kept_share: float = Field(default=0.5, ge=0, le=1, description="stop before Stage I when the filter "
                                  "keeps a smaller share of the rationales (their source cannot write them)")
    on_too_few: Literal["stop", "skip"] = Field(
        default="stop", description="when too few rationales pass: `stop` the run before Stage I, or `skip` "
        "RB-FT (no Stage I or II) and run the rest, results.json saying why RB-FT is missing")

    @model_validator(mode="after")
    def _teacher_named(self) -> "RationaleConfig":
        if self.source == "teacher" and not (self.teacher or self.endpoint_model):
            raise ValueError("source 'teacher' needs `teacher` (a model folder or hub name) or `endpoint_model`")
        if self.source == "file" and self.file is None:
            raise ValueError("source 'file' needs `file` (a JSONL with `id` and `rationale` per video)")
        return self


class EvalConfig(_Strict):
    """How the test split is judged: label scoring (default) or free generation read by a parser."""

    mode: Literal["score", "generate"] = Field(
        default="score", description="score: each label's log-probability, argmax (no parse failures); "
        "generate: the model's free reply, parsed (failures counted)")
    max_new_tokens: int = Field(default=64, ge=1, description="generate mode: the reply's budget (the authors: 64, greedy)")
    batch_size: int = Field(default=8, ge=1)
    calibration: Literal["none", "prior"] = Field(
        default="prior", description="score mode: prior: each method's label scores plus tau x log(train label "
        "share), tau chosen on the val split (none without one); none: the raw argmax")
    calibration_min_val: int = Field(default=3, ge=0, description="val videos of every label that choosing tau "
                                     "needs; with fewer the decisions stay raw")


class LabelBudgetConfig(_Strict):
    """The annotation-efficiency curve: RB-FT and direct SFT again with fewer labelled training videos."""

    videos: list[int] = Field(default=[], description="numbers of labelled training videos, each run as "
                              "`data.train_limit` (first videos in manifest order, each label's share kept); "
                              "the full train split is the curve's last point")
    seeds: list[int] | None = Field(default=None, description="seeds of each point (default: the experiment's)")

    @field_validator("videos")
    @classmethod
    def _positive_distinct(cls, videos: list[int]) -> list[int]:
        if any(n < 2 for n in videos) or len(set(videos)) != len(videos):
            raise ValueError("give distinct numbers of videos, each at least 2, e.g. [20, 40, 80]")
        return sorted(videos)


class ExperimentConfig(_Strict):
    """One experiment: a task, its data, a base model, and how to train and repeat it."""

    name: str = Field(min_length=1)
    task: TaskConfig
    data: DataConfig
    model: ModelConfig
    rationales: RationaleConfig = RationaleConfig()
    training: TrainingConfig = TrainingConfig()
    eval: EvalConfig = EvalConfig()
    seeds: list[int] = Field(default=[0], min_length=1)
    ablations: dict[str, dict] = Field(default={}, description="name -> settings that differ from this config "
                                       "(under rationales, training, data or model); each is run and compared too")
    label_budget: LabelBudgetConfig = LabelBudgetConfig()

    @field_validator("ablations")
    @classmethod
    def _ablations_valid(cls, ablations: dict[str, dict]) -> dict[str, dict]:
        for name, changes in ablations.items():
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"ablation name {name!r}: use a plain folder name")
            if not isinstance(changes, dict) or not changes:
                raise ValueError(f"ablation {name!r}: give the settings that differ, e.g. {{rationales: {{source: scene}}}}")
            wrong = sorted(set(changes) - ABLATABLE)
            if wrong:
                raise ValueError(f"ablation {name!r}: {', '.join(wrong)} cannot vary (only {', '.join(sorted(ABLATABLE))}); "
                                 "a different task or test set is another experiment")
            if name.startswith(BUDGET_PREFIX):
                raise ValueError(f"ablation {name!r}: names starting {BUDGET_PREFIX!r} are the label budget's")
            if "manifest" in (changes.get("data") or {}):
                raise ValueError(f"ablation {name!r}: data.manifest cannot vary (the test set must be the same); "
                                 "use data.train_limit for fewer labelled videos")
        return ablations

    def budget_points(self) -> dict[str, dict]:
        """The label budget's points as ablations: name -> the settings that differ."""
        seeds = {"seeds": self.label_budget.seeds} if self.label_budget.seeds else {}
        return {f"{BUDGET_PREFIX}{n}": {"data": {"train_limit": n}, **seeds} for n in self.label_budget.videos}

    def variants(self) -> dict[str, dict]:
        """Every ablation and label-budget point: name -> the settings that differ from this config."""
        return {**self.ablations, **self.budget_points()}

    def ablation(self, name: str) -> "ExperimentConfig":
        """This config with ablation (or label-budget point) `name`'s settings merged in, and none of its own."""
        raw = _merge(self.model_dump(mode="json"), self.variants()[name])
        raw["ablations"], raw["label_budget"] = {}, {}
        raw["name"] = f"{self.name}[{name}]"
        try:
            return ExperimentConfig.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(f"ablation {name!r}: invalid settings\n" + _describe(e)) from None


ABLATABLE = {"rationales", "training", "data", "model", "seeds"}  # seeds: fewer, to spend less
BUDGET_PREFIX = "labels-"


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        where, start = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        if start is not None and where is not None and start.line != where.line:
            line += f" (in what starts on line {start.line + 1})"
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (name, task, data, model, ...), got {type(raw).__name__}")
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: invalid config\n" + _describe(e)) from None
    if not config.data.manifest.is_absolute():
        data = config.data.model_copy(update={"manifest": (path.parent / config.data.manifest).resolve()})
        config = config.model_copy(update={"data": data})
    if config.rationales.file is not None and not config.rationales.file.is_absolute():
        rationales = config.rationales.model_copy(update={"file": (path.parent / config.rationales.file).resolve()})
        config = config.model_copy(update={"rationales": rationales})
    for name in config.variants():  # every one must be valid before any work
        try:
            config.ablation(name)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return config


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check its spelling and where it sits)")
        elif item["type"] == "missing":
            lines.append(f"  - {key}: required key is missing")
        else:
            lines.append(f"  - {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)
