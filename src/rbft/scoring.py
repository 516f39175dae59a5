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

import inspect
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from rbft.data.collate import IGNORE, Example


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
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            cache.batch_repeat_interleave(len(targets))  # row b -> rows b * n .. b * n + n - 1, as `pairs`
            ids = torch.tensor([reply[1:] + [pad] * (longest - len(reply)) for _, _, reply in pairs])
            mask = torch.cat([batch["attention_mask"].repeat_interleave(len(targets), 0),
                              torch.ones(len(pairs), longest - 1, dtype=batch["attention_mask"].dtype,
                                         device=model.device)], 1)
            inputs = torch.tensor([reply[:-1] + [pad] * (longest - len(reply)) for _, _, reply in pairs],
                                  device=model.device)
            width = batch["input_ids"].shape[1]
            positions = _mrope_positions(model, mask, width, len(targets))
            logp = torch.log_softmax(model(input_ids=inputs, attention_mask=mask, **{_cache_argument(model): cache},
                                           **positions).logits.float(), -1)
            wanted = logp.gather(-1, ids.to(model.device).unsqueeze(-1)).squeeze(-1)
            valid = torch.tensor([[k < len(reply) - 1 for k in range(longest - 1)] for _, _, reply in pairs],
                                 device=model.device)
            total = total + (wanted * valid).sum(-1)
        for (b, j, _), value in zip(pairs, total.tolist()):
            scores[rows[b], j] = value
    return scores


def _cache_argument(model) -> str:
    """`cache` in transformers releases that renamed it, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _mrope_positions(model, mask: torch.Tensor, width: int, repeat: int) -> dict:
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
