"""Label scoring: the log-probability of each label's full target given the video and the prompt.

The predicted label is the argmax, so there are no parse failures; the per-label scores
are kept for ROC and PR curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from rbft.data.collate import IGNORE, Example


@torch.no_grad()
def label_logprobs(model, collator, examples: Sequence[Example], targets: Sequence[str],
                   batch_size: int = 8) -> np.ndarray:
    """(len(examples), len(targets)) summed log-probabilities of each target as the reply."""
    model.eval()
    pairs = [replace(e, target=t) for e in examples for t in targets]
    scores = []
    for start in range(0, len(pairs), batch_size):
        batch = collator(pairs[start:start + batch_size])
        labels = batch.pop("labels")
        logits = model(**batch).logits[:, :-1].float()
        wanted = labels[:, 1:]
        mask = wanted != IGNORE
        logp = torch.log_softmax(logits, dim=-1).gather(-1, wanted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        scores.append((logp * mask).sum(-1).cpu())
    return torch.cat(scores).view(len(examples), len(targets)).numpy()
