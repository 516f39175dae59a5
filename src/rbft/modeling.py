"""The one place that loads models and processors: Hugging Face Auto classes, local folder or hub name."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForImageTextToText, AutoProcessor, PretrainedConfig, PreTrainedModel

from rbft.errors import ConfigError

# the base VLM that rbft pretrains on its synthetic world and ships (see rbft.world.pretrain)
SHIPPED_MODEL = Path(__file__).parent / "world" / "base_model"
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve(name_or_path: str | Path) -> str:
    """`rbft-world-base` (the shipped model) or a folder or a hub name, as `from_pretrained` takes it."""
    if str(name_or_path) in ("rbft-world-base", "builtin"):
        return str(SHIPPED_MODEL)
    return str(name_or_path)


def load_model(name_or_path: str | Path, dtype: str = "auto", attn_implementation: str = "sdpa",
               trust_remote_code: bool = False) -> PreTrainedModel:
    """A vision-language model with its generation head, loaded from safetensors.

    A folder holding a PEFT adapter (`adapter_config.json`) loads its base model first,
    by the reference the adapter records, then the adapter on top.
    """
    source = resolve(name_or_path)
    transformers.utils.logging.disable_progress_bar()  # rbft shows its own progress
    adapter = Path(source) / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise ConfigError(f"{source}: the adapter does not name its base model (base_model_name_or_path)")
        return PeftModel.from_pretrained(load_model(base, dtype, attn_implementation, trust_remote_code), source)
    try:
        return AutoModelForImageTextToText.from_pretrained(
            source, dtype=DTYPES.get(dtype, dtype), attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code, use_safetensors=True)
    except (OSError, ValueError) as error:
        raise ConfigError(_unloadable(source, "model", error)) from error


def load_processor(name_or_path: str | Path, trust_remote_code: bool = False):
    """The model's processor: tokenizer, chat template, and image/video preprocessing."""
    source = resolve(name_or_path)
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ConfigError(_unloadable(source, "processor", error)) from error
    if getattr(processor, "video_processor", None) is None:
        raise ConfigError(f"{source}: this processor has no video processor; rbft needs a video-capable VLM "
                          "(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, SmolVLM, LLaVA-OneVision, ...).")
    return processor


def save_model(model, processor, out: str | Path, merge: bool = True) -> Path:
    """Write `model` and its processor as a folder `from_pretrained` loads (safetensors).

    A PEFT model is merged into its base weights (`merge`) or saved as an adapter that names
    its base. The folder appears whole or not at all: it is written beside and renamed.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if merge and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def model_skeleton(name_or_path: str | Path, trust_remote_code: bool = False) -> PreTrainedModel:
    """The model's modules without weights (on the meta device): to check a config against it at no cost."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    source = resolve(name_or_path)
    adapter = Path(source) / "adapter_config.json"
    if adapter.is_file():
        source = resolve(json.loads(adapter.read_text()).get("base_model_name_or_path", ""))
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ConfigError(_unloadable(source, "model", error)) from error
    with init_empty_weights():
        return AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)


def new_model(config: PretrainedConfig, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised model of `config`'s architecture (the shipped model starts here)."""
    torch.manual_seed(seed)
    return AutoModelForImageTextToText.from_config(config)


def _unloadable(source: str, what: str, error: Exception) -> str:
    path = Path(source)
    if path.exists() and not path.is_dir():
        hint = "point model.name_or_path at the folder that holds config.json, not at a file"
    elif path.is_dir():
        hint = "the folder must hold config.json, the weights as *.safetensors, and the processor's files"
    else:
        hint = ("no such folder; as a hub name it needs network access or a copy in the Hugging Face cache "
                "(set HF_HOME, or download it first with `hf download NAME`)")
    return f"cannot load the {what} from {source}: {hint}. ({type(error).__name__}: {str(error).splitlines()[0]})"
