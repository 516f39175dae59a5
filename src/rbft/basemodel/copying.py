"""Batches without a video for the recipe's text-only phases: random token sequences to copy (`RepeatCollator`,
the copy phases) and (system, prompt, reply) triples (`TextChatCollator`, the copy drills)."""

from __future__ import annotations

import numpy as np
import torch

from rbft.basemodel.architecture import SPECIAL
from rbft.basemodel.reasoning import FORBIDDEN


class RepeatCollator:
    """Items (integers) to random token sequences each seen twice: `prefix, x, gap, newline, x`, the loss on the
    second `x` but its first token (nothing tells what a repeat starts with). Tokens are any of the tokenizer's
    plain ones whose text holds no task's label word; a batch's rows share one gap (0 to `gap`, so little
    padding), and a batch is fixed by (seed, its items)."""

    def __init__(self, tokenizer, gap: int, seed: int):
        specials = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
        self.ids = np.array([i for token, i in tokenizer.get_vocab().items() if i not in specials and not any(
            word in tokenizer.convert_tokens_to_string([token]).lower() for word in FORBIDDEN if len(word) >= 3)])
        self.gap, self.seed, self.pad = gap, seed, tokenizer.pad_token_id
        self.newline = tokenizer("\n", add_special_tokens=False)["input_ids"]

    def sequence(self, item: int, gap: int) -> tuple[np.ndarray, int]:
        """The item's tokens with `gap` random ones between `x` and its repeat, and where the loss starts."""
        rng = np.random.default_rng([self.seed, int(item)])
        x = rng.choice(self.ids, int(rng.integers(6, 17)))
        prefix = int(rng.integers(0, 21))
        before = rng.choice(self.ids, prefix + len(x) + gap)
        before[prefix:prefix + len(x)] = x
        before = np.concatenate([before, self.newline])
        return np.concatenate([before, x]), len(before) + 1

    def __call__(self, items) -> dict:
        gap = int(np.random.default_rng([self.seed, min(int(i) for i in items), 1]).integers(0, self.gap + 1))
        rows = [self.sequence(i, gap) for i in items]
        width = max(len(t) for t, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, (tokens, start) in enumerate(rows):
            input_ids[row, :len(tokens)] = torch.from_numpy(tokens)
            labels[row, start:len(tokens)] = input_ids[row, start:len(tokens)]
            mask[row, :len(tokens)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


class TextChatCollator:
    """(system, prompt, reply) triples without a video to a batch, the loss on the reply only (copy drills)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, batch) -> dict:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "right"  # the reply at each row's start + its prefix length
        texts, starts = [], []
        for system, prompt, reply in batch:
            turns = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
            prefix = self.processor.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
            full = self.processor.apply_chat_template(turns + [{"role": "assistant", "content": reply}], tokenize=False)
            assert full.startswith(prefix)
            texts.append(full)
            starts.append(len(tokenizer(prefix, add_special_tokens=False)["input_ids"]))
        encoded = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        labels = encoded["input_ids"].clone()
        labels[encoded["attention_mask"] == 0] = -100
        for row, start in enumerate(starts):
            labels[row, :start] = -100
        return {**encoded, "labels": labels}
