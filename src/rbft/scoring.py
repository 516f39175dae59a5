"""Label scoring: the log-probability of each label's full target given the video and the prompt.

The predicted label is the argmax, so there are no parse failures; the per-label scores
are kept for ROC and PR curves.

The video and the prompt go through the model once per video: a batch of prompts (sorted
by length, left-padded so each ends where its reply begins) fills a key/value cache, which
is repeated once per label (`batch_repeat_interleave`), and every label's reply of every row
is scored from it in one more forward, right-padded (padding after a reply cannot change it:
attention is causal). Left padding shifts a row's positions by a constant, which rotary
position embeddings do not see. `label_logprobs_full` is the plain way, one full sequence
per (video, label): the reference the tests hold the fast way to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rbft.config import TaskConfig
from rbft.data.collate import IGNORE
from rbft.data.conversation import Example
from rbft.data.manifest import VideoRecord
from rbft.modeling import cache_argument, load_for_videos, mrope_positions, prompt_cache
from rbft.prompts import label_examples, label_target


def label_scores(task: TaskConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                 dtype: str = "auto", attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                 batch_size: int = 8) -> np.ndarray:
    """(len(videos), len(labels)) log-probability of each label's target, by the model at `model_dir`."""
    model, collator = load_for_videos(model_dir, frames, dtype, attn_implementation, trust_remote_code)
    return label_logprobs(model, collator, label_examples(task, videos), [label_target(x) for x in task.labels],
                          batch_size)


@torch.no_grad()
def label_logprobs(model, collator, examples: Sequence[Example], targets: Sequence[str],
                   batch_size: int = 8) -> np.ndarray:
    """(len(examples), len(targets)) summed log-probabilities of each target (and end of turn) as the reply."""
    model.eval()
    pad = collator.processor.tokenizer.pad_token_id or 0
    replies = [[collator.reply_ids(replace(e, target=t)) for t in targets] for e in examples]
    scores = np.zeros((len(examples), len(targets)))
    for rows, batch in collator.prompt_batches(examples, batch_size):  # every prompt ends where replies begin
        batch = batch.to(model.device)
        out = model(**batch, use_cache=True)
        first = torch.log_softmax(out.logits[:, -1].float(), -1)
        pairs = [(b, j, replies[i][j]) for b, i in enumerate(rows) for j in range(len(targets))]
        total = torch.stack([first[b, reply[0]] for b, _, reply in pairs])
        longest = max(len(reply) for _, _, reply in pairs)
        if longest > 1:  # the rest of every reply, all labels of all rows in one forward from the cache
            cache = prompt_cache(out)
            cache.batch_repeat_interleave(len(targets))  # row b -> rows b * n .. b * n + n - 1, as `pairs`
            ids = torch.tensor([reply[1:] + [pad] * (longest - len(reply)) for _, _, reply in pairs])
            mask = torch.cat([batch["attention_mask"].repeat_interleave(len(targets), 0),
                              torch.ones(len(pairs), longest - 1, dtype=batch["attention_mask"].dtype,
                                         device=model.device)], 1)
            inputs = torch.tensor([reply[:-1] + [pad] * (longest - len(reply)) for _, _, reply in pairs],
                                  device=model.device)
            width = batch["input_ids"].shape[1]
            positions = mrope_positions(model, mask, width, len(targets))
            logp = torch.log_softmax(model(input_ids=inputs, attention_mask=mask, **{cache_argument(model): cache},
                                           **positions).logits.float(), -1)
            wanted = logp.gather(-1, ids.to(model.device).unsqueeze(-1)).squeeze(-1)
            valid = torch.tensor([[k < len(reply) - 1 for k in range(longest - 1)] for _, _, reply in pairs],
                                 device=model.device)
            total = total + (wanted * valid).sum(-1)
        for (b, j, _), value in zip(pairs, total.tolist()):
            scores[rows[b], j] = value
    return scores


@torch.no_grad()
def label_logprobs_full(model, collator, examples: Sequence[Example], targets: Sequence[str],
                        batch_size: int = 8) -> np.ndarray:
    """The same figures, one full (video, prompt, label) sequence per pair, `batch_size` pairs a forward."""
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
