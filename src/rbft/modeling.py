"""The one place that loads models and processors, and that knows how model families differ.

Models load with Hugging Face Auto classes from a local folder or a hub name. What differs
between the families rbft runs (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, SmolVLM, LLaVA-OneVision,
InternVL, ...) is kept here too, each as a small function the rest of rbft calls: which
modules are the vision tower and which LoRA adapts, how a cached forward gets its
positions, where a video's tokens sit and on what grid, and the Qwen2-VL parts the
shipped base model is built from (`rbft.basemodel`). No other module imports a model class.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from transformers import (AutoConfig, AutoModelForImageTextToText, AutoProcessor, PretrainedConfig, PreTrainedModel,
                          Qwen2Tokenizer, Qwen2VLConfig, Qwen2VLImageProcessor, Qwen2VLProcessor,
                          Qwen2VLVideoProcessor)
from transformers.utils import is_flash_attn_2_available
from transformers.video_utils import VideoMetadata

from rbft import towercache
from rbft.errors import ConfigError

# the base VLM that rbft pretrains on its synthetic world and ships (see rbft.basemodel)
SHIPPED_MODEL = Path(__file__).parent / "basemodel" / "rbft-world-base"
SHIPPED_NAMES = ("rbft-world-base", "builtin")
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# projections of the language model that LoRA adapts by default (Qwen, Llama, SmolLM and kin)
TEXT_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_PREFIXES = ("visual.", "vision_tower.", "vision_model.", "model.visual.", "model.vision_tower.",
                   "model.vision_model.")


def resolve(name_or_path: str | Path) -> str:
    """`rbft-world-base` (the shipped model) or a folder or a hub name, as `from_pretrained` takes it."""
    name = str(name_or_path)
    if name in SHIPPED_NAMES or (Path(name).parts[-3:] == ("rbft", "world", "base_model") and not Path(name).exists()):
        return str(SHIPPED_MODEL)  # (adapters saved before the model moved to rbft/basemodel name its old folder)
    return name


def load_model(name_or_path: str | Path, dtype: str = "auto", attn_implementation: str | dict = "sdpa",
               trust_remote_code: bool = False, device: torch.device | str | None = None) -> PreTrainedModel:
    """A vision-language model with its generation head, loaded from safetensors.

    `device`: where its weights go as they load (`inference_device()` for a model that is not
    trained); None leaves them on the CPU, for the trainer to place (and, under DeepSpeed
    ZeRO-3 or FSDP, to shard). A folder holding a PEFT adapter (`adapter_config.json`) loads
    its base model first, by the reference the adapter records, then the adapter on top.
    """
    source = resolve(name_or_path)
    transformers.utils.logging.disable_progress_bar()  # rbft shows its own progress
    adapter = Path(source) / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise ConfigError(f"{source}: the adapter does not name its base model (base_model_name_or_path)")
        return PeftModel.from_pretrained(load_model(base, dtype, attn_implementation, trust_remote_code, device),
                                         source)
    placement = {"device_map": {"": str(device)}} if device is not None else {}
    try:
        with outside_zero3(device is not None):
            model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=load_dtype(dtype, source, trust_remote_code), attn_implementation=attention_backend(
                    attn_implementation), trust_remote_code=trust_remote_code, use_safetensors=True, **placement)
    except (OSError, ValueError) as error:
        raise ConfigError(_unloadable(source, "model", error)) from error
    if device is not None:  # for inference: no weight wants a gradient
        model.requires_grad_(False)
    towercache.attach(model)  # a frozen tower encodes each video once per process (rbft.towercache)
    return model


@contextmanager
def outside_zero3(whole: bool = True):
    """Within it, a model is made whole, not sharded, even in a process that trained under DeepSpeed ZeRO-3
    (transformers then keeps the trainer's DeepSpeed config and would shard every model it makes, and
    refuses a device_map): a model for inference or one rebuilt from gathered weights."""
    from transformers.integrations import deepspeed

    kept = deepspeed._hf_deepspeed_config_weak_ref
    if whole:
        deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        deepspeed._hf_deepspeed_config_weak_ref = kept


def inference_device() -> torch.device:
    """Where a model that is not being trained runs: this process's GPU (each process its own under
    `accelerate launch`), else the CPU."""
    from rbft.runs import process_state

    return process_state().device


def attention_backend(wanted: str | dict) -> str | dict:
    """`wanted`, or sdpa in place of flash_attention_2 where the flash-attn package cannot run (with a warning)."""
    if isinstance(wanted, dict):
        return {part: attention_backend(kind) for part, kind in wanted.items()}
    if wanted == "flash_attention_2" and not (torch.cuda.is_available() and is_flash_attn_2_available()):
        warnings.warn("model.attn_implementation flash_attention_2: the flash-attn package is not installed or "
                      "there is no GPU; using sdpa instead (`pip install flash-attn` on a GPU machine for it)",
                      stacklevel=3)
        return "sdpa"
    return wanted


def eager_language(wanted: str) -> dict:
    """Attention for attention maps: eager (which returns its weights) in the language model only; the vision
    tower, whose weights no map reads, keeps `wanted` (sdpa or flash attention over its many patches)."""
    return {"": "eager", "text_config": "eager", "vision_config": wanted}


def load_dtype(dtype: str, source: str, trust_remote_code: bool = False):
    """The dtype to load in: `dtype` as asked (`auto`: the checkpoint's own), but float16 for bfloat16 weights
    on a GPU without bfloat16 (V100, T4), where bfloat16 would be emulated and its training would mix precisions."""
    wanted = DTYPES.get(dtype, dtype)
    if not torch.cuda.is_available() or torch.cuda.is_bf16_supported():
        return wanted
    saved = wanted
    if wanted == "auto":
        saved = getattr(AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code), "dtype", None)
    return half_for(wanted, saved, bf16_supported=False)


def half_for(wanted, saved, bf16_supported: bool):
    """float16 where bfloat16 (asked for, or the checkpoint's under `auto`) cannot run, else `wanted`."""
    if not bf16_supported and torch.bfloat16 in (wanted, saved) and wanted in ("auto", torch.bfloat16):
        warnings.warn("this GPU has no bfloat16: loading the model in float16 instead (set model.dtype: float32 "
                      "for full precision)", stacklevel=3)
        return torch.float16
    return wanted


def mixed_precision(weights: torch.dtype, cuda: bool, bf16_supported: bool) -> str:
    """The trainer's autocast for weights of dtype `weights`: none on the CPU, float16 for float16 weights or a
    GPU without bfloat16, else bfloat16."""
    if not cuda:
        return "no"
    return "fp16" if weights == torch.float16 or not bf16_supported else "bf16"


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


def load_for_videos(name_or_path: str | Path, frames: Callable, dtype: str = "auto",
                    attn_implementation: str | dict = "sdpa", trust_remote_code: bool = False, *,
                    training: bool = False):
    """The model and the collator that feeds it conversations about videos (`frames(path)` gives a clip).

    A model loaded for inference sits on `inference_device()`; one loaded for `training` stays on
    the CPU for the trainer to place.
    """
    from rbft.data.collate import VideoChatCollator  # (the collator asks this module how a family takes a video)

    processor = load_processor(name_or_path, trust_remote_code)
    model = load_model(name_or_path, dtype, attn_implementation, trust_remote_code,
                       None if training else inference_device())
    return model, VideoChatCollator(processor, frames)


def save_model(model, processor, out: str | Path, merge: bool = True) -> Path:
    """Write `model` and its processor as a folder `from_pretrained` loads (safetensors).

    A PEFT model is merged into its base weights (`merge`) or saved as an adapter that names
    its base. Weights are saved in the dtype the model was loaded in (training may have kept
    its trainable ones in float32). The folder appears whole or not at all: it is written
    beside and renamed.
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if merge and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    dtype = loaded_dtype(model)
    if dtype is not None:  # weights trained in float32 (`rbft.training.prepare`) go back to the loaded dtype
        model = model.to(dtype)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def loaded_dtype(model) -> torch.dtype | None:
    """The floating dtype a model (not a LoRA wrap: its adapters keep their own) was loaded in, from its config."""
    loaded = None if hasattr(model, "peft_config") else getattr(getattr(model, "config", None), "dtype", None)
    return loaded if isinstance(loaded, torch.dtype) and loaded.is_floating_point else None


def rebuilt(model, state_dict: dict[str, torch.Tensor]) -> PreTrainedModel:
    """`model`'s architecture (its LoRA wrap included) holding `state_dict`, with nothing shared with `model`: a
    model that DeepSpeed ZeRO-3 or FSDP sharded, whole again from the weights gathered from its shards."""
    from accelerate import init_empty_weights

    lora = getattr(model, "peft_config", None) if hasattr(model, "get_base_model") else None
    base = model.get_base_model() if lora else model
    with init_empty_weights(), outside_zero3():
        fresh = type(base)(base.config)
        if lora:
            from peft import get_peft_model

            fresh = get_peft_model(fresh, lora["default"])
    fresh.load_state_dict(state_dict, strict=False, assign=True)
    fresh.tie_weights()
    empty = [name for name, param in fresh.named_parameters() if param.is_meta]
    assert not empty, f"the gathered weights lack {empty[:3]}"
    return fresh


def model_skeleton(name_or_path: str | Path, trust_remote_code: bool = False) -> PreTrainedModel:
    """The model's modules without weights (on the meta device): to check a config against it at no cost."""
    from accelerate import init_empty_weights

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


# --- how a family's processor takes a video --------------------------------------------------------

def temporal_patch(processor) -> int:
    """Frames per temporal patch (2 for the Qwen-VL families): a clip's frame count must be a multiple of it."""
    return getattr(processor.video_processor, "temporal_patch_size", 1) or 1


def frame_times(info, stamps) -> VideoMetadata:
    """A clip's frame times (seconds) for processors that print them in the prompt (Qwen3-VL, SmolVLM), as
    transformers' VideoMetadata: a 1000 fps clock, so index / fps is the time in seconds."""
    return VideoMetadata(total_num_frames=int(info.duration_s * 1000) + 1, fps=1000.0, width=info.width,
                         height=info.height, duration=info.duration_s,
                         frames_indices=[int(round(t * 1000)) for t in stamps])


# --- the vision tower, and what LoRA adapts -------------------------------------------------------

def is_vision(name: str) -> bool:
    """Whether a parameter or module of the model belongs to its vision tower."""
    return name.startswith(VISION_PREFIXES) or ".visual." in name or ".vision_tower." in name


def vision_tower(model: PreTrainedModel) -> tuple[torch.nn.Module, int]:
    """The vision tower with its merger (Qwen-VL families), and the width of the tokens it gives."""
    return model.model.visual, model.config.text_config.hidden_size


def lora_targets(model, wanted: Sequence[str] | None, train_vision: bool) -> list[str]:
    """The modules LoRA adapts: those named `wanted` (default: the text projections), outside the
    vision tower unless it is trained. A name that matches nothing is a config error."""
    names = {n for n, _ in model.named_modules()}
    wanted = list(wanted or TEXT_PROJECTIONS)
    found = {w for w in wanted if any(n.endswith("." + w) or n == w for n in names)}
    if missing := sorted(set(wanted) - found):
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"training.target_modules: {missing} not found in {type(model).__name__}; its linear "
                          f"layers are named {leaves[:24]}")
    return [n for n in names if n.rsplit(".", 1)[-1] in found and (train_vision or not is_vision(n))]


# --- a cached forward: the reply after a prompt whose keys and values are kept ----------------------

def cache_argument(model) -> str:
    """`cache` in transformers releases that renamed it, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def prompt_cache(outputs):
    """The key/value cache a forward with `use_cache=True` returned (`cache` or `past_key_values`, as `cache_argument`)."""
    return outputs.cache if getattr(outputs, "cache", None) is not None else outputs.past_key_values


def mrope_positions(model, mask: torch.Tensor, width: int, repeat: int) -> dict:
    """Positions of the reply tokens for M-RoPE families (Qwen2/2.5/3-VL), from the deltas their prefill kept.

    Plain rotary families need none: their default (the cache position) continues the prompt's
    positions. M-RoPE ones would derive them from the whole attention mask, which does not fit a
    cached step, so they get what `generate` gives them: the count of real tokens before each
    one plus the row's delta, on every rotary axis.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    deltas = getattr(getattr(base, "model", None), "rope_deltas", None)
    if deltas is None:
        return {}
    text = (mask.long().cumsum(-1) - 1)[:, width:]
    return {"position_ids": (text + deltas.to(text.device).repeat_interleave(repeat, 0)).unsqueeze(0).expand(3, -1, -1)}


@contextmanager
def decoder_inputs(model, wanted: bool = True):
    """Within `with`, the list holds the input embeddings (video features merged in) of the language model's last
    forward: what its first layer reads; empty for a family whose decoder is not found or not fed embeddings."""
    taken: list[torch.Tensor] = []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        decoder = base.get_decoder() if wanted else None
    except (AttributeError, ValueError, NotImplementedError):
        decoder = None
    if decoder is None:
        yield taken
        return

    def take(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None:
            taken[:] = [embeds.detach()]

    hook = decoder.register_forward_pre_hook(take, with_kwargs=True)
    try:
        yield taken
    finally:
        hook.remove()


# --- where a video's tokens are -------------------------------------------------------------------

def video_positions(config, ids: torch.Tensor) -> torch.Tensor:
    """Where the video's tokens are: the video placeholder (Qwen-VL, LLaVA-OneVision), else the image one
    (SmolVLM / Idefics3 give each frame as an image)."""
    for name in ("video_token_id", "video_token_index", "image_token_id", "image_token_index"):
        token = getattr(config, name, None)
        found = (ids == token).nonzero().flatten() if token is not None else torch.empty(0)
        if len(found):
            return found
    raise ValueError("attention maps: no video tokens found in the input (unknown placeholder token)")


def video_grid(batch: dict, processor, n: int, frames: Callable[[], int]) -> tuple[int, int, int]:
    """(T, H, W) of a video's `n` tokens: Qwen-VL's grid from `video_grid_thw` (after the spatial merge), else
    one square grid per frame (`frames()` counts them)."""
    if "video_grid_thw" in batch:
        t, h, w = batch["video_grid_thw"][0].tolist()
        merge = getattr(processor.video_processor, "merge_size", 1) or 1
        return t, h // merge, w // merge
    frames = frames()
    side = int(round((n / frames) ** 0.5)) if n % frames == 0 else 0
    if side * side * frames != n:
        raise ValueError(f"attention maps: {n} video tokens over {frames} frames do not form square per-frame "
                         "grids; this family's layout is not supported for attention maps")
    return frames, side, side


# --- Qwen2-VL from parts: the shipped base model's family (rbft.basemodel) ----------------------------

def qwen2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], special: Sequence[str] | None = None,
                    max_length: int | None = None) -> Qwen2Tokenizer:
    """Qwen2's byte-level BPE tokenizer over `vocab` and `merges`, with `special` tokens added."""
    extra = {"additional_special_tokens": list(special)} if special is not None else {}
    return Qwen2Tokenizer(vocab=vocab, merges=merges, **extra,
                          **({"model_max_length": max_length} if max_length is not None else {}))


def qwen2_vl_processor(tokenizer, chat_template: str, **sizes) -> Qwen2VLProcessor:
    """Qwen2-VL's processor: its image and video processors with the patching in `sizes`, and `tokenizer`."""
    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=chat_template)


def qwen2_vl_config(text: dict, vision: dict, **settings) -> Qwen2VLConfig:
    """A Qwen2-VL architecture: its language model (`text`), vision tower (`vision`) and token ids."""
    return Qwen2VLConfig(text_config=text, vision_config=vision, **settings)
