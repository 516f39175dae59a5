"""Balancing the labels of a label stage (Stage II, direct SFT) over a small, imbalanced set (`training.balance`).

`sample` draws every label equally often over an epoch (with replacement, `BalancedSampler`); `batch`
equally often in every batch too (`StratifiedSampler`); `loss` shows each example once an epoch and
weights its loss by its label's inverse share (`WeightedCollator`'s `weight`, which `rbft.training`'s
trainer reads). Measured on the demo's world in docs/results.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from rbft.data.conversation import Example


def balanced_weights(examples: Sequence[Example]) -> torch.Tensor:
    """Each example's chance of being drawn so that every distinct reply (a label) is drawn equally often."""
    counts = Counter(e.target for e in examples)
    return torch.tensor([1.0 / counts[e.target] for e in examples], dtype=torch.double)


class BalancedSampler(WeightedRandomSampler):
    """An epoch is as many draws, with replacement, as there are examples, each drawn with its weight.

    The draws depend on the seed and the epoch only (the Trainer calls `set_epoch`), so a run
    resumed from a checkpoint draws what the uninterrupted run would have, and every process
    draws the same (accelerate gives each its shard of the batches).
    """

    def __init__(self, weights: torch.Tensor, seed: int):
        super().__init__(weights, len(weights), replacement=True)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return super().__iter__()


class StratifiedSampler(Sampler):
    """Every label equally often, and in every run of consecutive draws too: the draws cycle through the labels
    in an order shuffled each epoch, and each label through its examples, shuffled (a rare label's examples
    repeat when they run out). Any `batch_size` consecutive draws, so every batch, hold each label batch_size / labels times,
    give or take one, so no batch pulls the label prior towards the labels it happens to hold. An epoch is as
    many draws as there are examples; the draws depend on the seed and the epoch only (as `BalancedSampler`'s).
    """

    def __init__(self, examples: Sequence[Example], seed: int):
        by_label: dict[str, list[int]] = {}
        for i, e in enumerate(examples):
            by_label.setdefault(e.target, []).append(i)
        self.groups, self.size, self.seed, self.epoch = list(by_label.values()), len(examples), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        rounds = math.ceil(self.size / len(self.groups))
        cycles = []
        for group in self.groups:
            draws = []
            while len(draws) < rounds:
                draws += [group[k] for k in torch.randperm(len(group), generator=generator).tolist()]
            cycles.append(draws)
        return iter([cycles[order[k % len(order)]][k // len(order)] for k in range(self.size)])


class WeightedCollator:
    """The collator's batch with each example's weight (`weight`, one per row): the share of its reply (a label)
    among the examples, inverted, so every label weighs the same in the loss (`balance="loss"`); the weights
    average to 1 over the examples."""

    def __init__(self, collator, examples: Sequence[Example]):
        counts = Counter(e.target for e in examples)
        self.collator = collator
        self.weights = {t: len(examples) / (len(counts) * n) for t, n in counts.items()}

    def __call__(self, examples: Sequence[Example]) -> dict:
        return {**self.collator(examples), "weight": torch.tensor([self.weights[e.target] for e in examples])}
