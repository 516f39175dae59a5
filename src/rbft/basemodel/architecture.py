"""The shipped base model's parts: a Qwen2-VL architecture at toy scale, its tokenizer and processor.

Why Qwen2-VL: it is the family the paper fine-tunes (Qwen2.5-VL), its video path is
the simplest of the real families (patches of two frames, no window attention), and
transformers loads it with `AutoModelForImageTextToText`. The vision tower sees
128x128 frames as 8x8 patches of 16 pixels; with a spatial merge of 1 every patch is
one language-model token, so the label token's attention maps back onto an 8x8 grid
per pair of frames (the paper's Figure 2 at toy scale).
"""

from __future__ import annotations

import json

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rbft.basemodel.reasoning import KNOWLEDGE_PROMPTS, knowledge_answer, reasoning_example
from rbft.modeling import qwen2_tokenizer, qwen2_vl_config, qwen2_vl_processor
from rbft.world.captions import PROMPTS, answer
from rbft.world.knowledge import every_fact
from rbft.world.scenes import sample_scenario

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
           "<|image_pad|>", "<|video_pad|>"]
VOCAB_SIZE = 2048
PATCH = 16
FRAME_PIXELS = 128 * 128

# Qwen2-VL's own chat layout: a default system turn, <|im_start|>role ... <|im_end|>,
# and a vision block per image or video in the user's content.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus(n_records: int = 3000, seed: int = 12345) -> list[str]:
    """Text the tokenizer is trained on: every prompt, and the pretraining's answers, knowledge and made-up
    quizzes about random scenes. No task's wording: a task's labels encode as pieces of known words."""
    rng = np.random.default_rng(seed)
    texts = [p for prompts in PROMPTS.values() for p in prompts] + list(KNOWLEDGE_PROMPTS) + every_fact()
    for i in range(n_records):
        record = sample_scenario(rng, f"t{i}")
        texts += [answer(record, kind, rng) for kind in PROMPTS]
        texts += [knowledge_answer(record, rng), *reasoning_example(record, rng)]
    texts += ["You are a helpful assistant.", "You are a"]
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE tokenizer, Qwen2's pre-tokenization, trained on `texts` (any text still encodes)."""
    backend = Tokenizer(models.BPE())
    probe = qwen2_tokenizer({"<|endoftext|>": 0}, [])
    backend.normalizer = probe.backend_tokenizer.normalizer
    backend.pre_tokenizer = probe.backend_tokenizer.pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    trained = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    return qwen2_tokenizer(trained["vocab"], merges, SPECIAL[1:], max_length=4096)


def build_processor(tokenizer):
    """Qwen2-VL's processor with the tiny model's patching: 16-pixel patches, no spatial merge."""
    return qwen2_vl_processor(tokenizer, CHAT_TEMPLATE, patch_size=PATCH, temporal_patch_size=2, merge_size=1,
                              cap_pixels_per_frame=True,
                              size={"shortest_edge": 4 * PATCH * PATCH, "longest_edge": FRAME_PIXELS})


def model_config(tokenizer):
    """About 5M parameters: a 4-layer vision tower (width 192) and a 4-layer language model (width 256)."""
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
                tie_word_embeddings=True)
    vision = dict(depth=4, embed_dim=192, hidden_size=256, num_heads=4, mlp_ratio=3, patch_size=PATCH,
                  spatial_merge_size=1, temporal_patch_size=2)
    return qwen2_vl_config(text, vision, image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                           vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
                           tie_word_embeddings=True)
