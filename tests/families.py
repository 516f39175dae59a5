"""Tiny random models of each real VLM family, from their real config classes, with processors.

The tokenizer is the world's (trained offline from the pretraining corpus) plus each family's
special tokens; the chat templates follow each family's published layout. Sizes are tiny
so a training step takes well under a second.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoTokenizer,
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLProcessor,
    InternVLVideoProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
    SmolVLMConfig,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)

from rbft.basemodel.architecture import CHAT_TEMPLATE, corpus, train_tokenizer

SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] in ('image', 'video') %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
LLAVA_OV_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{{ '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "smolvlm", "llava_onevision", "internvl")
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                   "video_token": "<video>"}


@lru_cache(maxsize=None)
def _tokenizer(extra: tuple[str, ...] = ()):
    tokenizer = train_tokenizer(corpus(n_records=300))
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra)}, replace_extra_special_tokens=False)
    return tokenizer


@lru_cache(maxsize=None)
def _internvl_tokenizer():
    """The world's tokenizer with InternVL's named image tokens (its processor reads them by name)."""
    folder = Path(tempfile.mkdtemp(prefix="rbft-internvl-tokenizer-"))
    _tokenizer(tuple(INTERNVL_TOKENS.values())).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder, extra_special_tokens=INTERNVL_TOKENS)


def _text(tokenizer, **kw) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, **kw)


def build(family: str, seed: int = 0):
    """(processor, model) of `family` at toy scale; frames of 56x56 (or the family's minimum)."""
    torch.manual_seed(seed)
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        tok = _tokenizer()
        ids = tok.convert_tokens_to_ids
        special = dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                       vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
        patch = 16 if family == "qwen3_vl" else 14
        sizes = dict(patch_size=patch, temporal_patch_size=2, merge_size=2,
                     size={"shortest_edge": 4 * 4 * patch * patch, "longest_edge": 4 * 4 * patch * patch})
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        if family == "qwen2_vl":
            from transformers import Qwen2VLConfig, Qwen2VLProcessor

            config = Qwen2VLConfig(text_config=_text(tok, rope_parameters=rope), vision_config=dict(
                depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=patch,
                spatial_merge_size=2, temporal_patch_size=2), **special)
            processor_class, video = Qwen2VLProcessor, Qwen2VLVideoProcessor(**sizes)
        elif family == "qwen2_5_vl":
            config = Qwen2_5_VLConfig(text_config=_text(tok, rope_parameters=rope), vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=patch,
                spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]), **special)
            processor_class, video = Qwen2_5_VLProcessor, Qwen2VLVideoProcessor(**sizes)
        else:
            rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}
            config = Qwen3VLConfig(text_config=_text(tok, head_dim=16, rope_parameters=rope), vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=patch,
                spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0]),
                **special)
            processor_class, video = Qwen3VLProcessor, Qwen3VLVideoProcessor(**sizes)
        processor = processor_class(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tok,
                                    video_processor=video, chat_template=CHAT_TEMPLATE)
    elif family == "smolvlm":
        tok = _tokenizer(("<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>",
                          *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))))
        size = {"longest_edge": 64}
        processor = SmolVLMProcessor(
            image_processor=SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False),
            tokenizer=tok, video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
            image_seq_len=4, chat_template=SMOLVLM_TEMPLATE)
        config = SmolVLMConfig(text_config=dict(model_type="llama", **_text(tok)), vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
            patch_size=16), scale_factor=2, image_token_id=tok.convert_tokens_to_ids("<image>"))
    elif family == "llava_onevision":
        tok = _tokenizer(("<image>", "<video>"))
        ip = LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32},
                                          image_grid_pinpoints=[[32, 32]])
        vp = LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32})
        processor = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                            num_image_tokens=16, vision_feature_select_strategy="full",
                                            chat_template=LLAVA_OV_TEMPLATE)
        config = LlavaOnevisionConfig(
            text_config=dict(model_type="qwen2", **_text(tok)),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
            image_token_index=tok.convert_tokens_to_ids("<image>"), video_token_index=tok.convert_tokens_to_ids("<video>"),
            vision_feature_select_strategy="full", vision_feature_layer=-1, image_grid_pinpoints=[[32, 32]])
    elif family == "internvl":  # each frame an image: "Frame1: <img><IMG_CONTEXT>...</img>"
        tok = _internvl_tokenizer()
        processor = InternVLProcessor(
            image_processor=GotOcr2ImageProcessor(size={"height": 32, "width": 32}, crop_to_patches=False),
            tokenizer=tok, video_processor=InternVLVideoProcessor(size={"height": 32, "width": 32}),
            image_seq_length=4, chat_template=LLAVA_OV_TEMPLATE)
        config = InternVLConfig(
            text_config=dict(model_type="qwen2", **_text(tok)),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=[32, 32], patch_size=[8, 8]),
            image_token_id=tok.context_image_token_id, downsample_ratio=0.5)
    else:
        raise ValueError(family)
    config.text_config.pad_token_id = processor.tokenizer.pad_token_id
    return processor, AutoModelForImageTextToText.from_config(config)
