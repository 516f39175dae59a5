"""Batched generation with a Hugging Face model in this process.

Prompts are left-padded so every row's reply starts at the same position, and
batched by length so little compute goes to padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rbft.data.collate import Example


@torch.no_grad()
def generate(model, collator, examples: Sequence[Example], max_new_tokens: int = 96, batch_size: int = 8,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
    """The model's reply to each example's video and prompt, in the examples' order."""
    model.eval()
    tokenizer = collator.processor.tokenizer
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].prompt))
    replies: list[str] = [""] * len(examples)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = collator.prompts([examples[i] for i in rows]).to(model.device)
            settings = {"do_sample": do_sample, "max_new_tokens": max_new_tokens,
                        "pad_token_id": tokenizer.pad_token_id}
            if do_sample:
                settings.update(temperature=temperature, top_p=top_p)
            out = model.generate(**batch, **settings)
            texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, text in zip(rows, texts):
                replies[i] = text.strip()
    finally:
        tokenizer.padding_side = side
    return replies
