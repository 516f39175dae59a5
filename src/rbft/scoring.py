"""Label scoring: the log-probability of each label's full target given the video and the prompt.

The predicted label is the argmax, so there are no parse failures; the per-label scores
are kept for ROC and PR curves.

The video and the prompt go through the model once per video: a batch of prompts (sorted
by length, left-padded so each ends where its reply begins) fills a key/value cache, and
the model is asked for the last position's logits only (`logits_to_keep`), not the whole
prompt's (B x L x vocabulary). Each label's reply (all rows at once, right-padded: padding
after a reply cannot change it, attention is causal) is scored from that one cache, which is
cut back to the prompt after each label, so memory does not grow with the number of labels.
Left padding shifts a row's positions by a constant, which rotary position embeddings do not
see. The output layer's product is taken again in float32 from its input (`_Head`): a
bfloat16 model's logits are rounded to 8 bits of mantissa, tenths of a nat on a summed score.
`label_logprobs_full` is the plain way, one full sequence per (video, label): the reference
the tests hold the fast way to.

The same prompt forward gives what the model represents of each video (`taken`): the last
layer's state where the label is predicted (the output layer's input at the prompt's last
position) and the video's tokens as the language model receives them, max-pooled. Linear
probes (`rbft.probes`) read them, at no extra forward.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rbft.config import TaskConfig
from rbft.data.collate import IGNORE
from rbft.data.conversation import Example
from rbft.data.manifest import VideoRecord
from rbft.modeling import cache_argument, decoder_inputs, load_for_videos, mrope_positions, prompt_cache, video_positions
from rbft.prompts import label_examples, label_target


def label_scores(task: TaskConfig, model_dir: str | Path, videos: Sequence[VideoRecord], frames: Callable,
                 dtype: str = "auto", attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                 batch_size: int = 8, taken: dict | None = None) -> np.ndarray:
    """(len(videos), len(labels)) log-probability of each label's target, by the model at `model_dir`
    (and each video's features into `taken`, as `label_logprobs`)."""
    model, collator = load_for_videos(model_dir, frames, dtype, attn_implementation, trust_remote_code)
    return label_logprobs(model, collator, label_examples(task, videos), [label_target(x) for x in task.labels],
                          batch_size, taken)


@torch.no_grad()
def label_logprobs(model, collator, examples: Sequence[Example], targets: Sequence[str],
                   batch_size: int = 8, taken: dict | None = None) -> np.ndarray:
    """(len(examples), len(targets)) summed log-probabilities of each target (and end of turn) as the reply.

    `taken`: a dict to receive each example's features from the same forward: `label` (the last layer's state
    where the reply begins) and `vision` (the video's tokens as the language model gets them, max-pooled), each
    (len(examples), hidden size) float32."""
    model.eval()
    pad = collator.processor.tokenizer.pad_token_id or 0
    replies = [[collator.reply_ids(replace(e, target=t)) for t in targets] for e in examples]
    scores = np.zeros((len(examples), len(targets)))
    head, last = _Head(model), ({"logits_to_keep": 1} if keeps_logits(model) else {})
    features: dict[str, list] = {"label": [None] * len(examples), "vision": [None] * len(examples)}
    for rows, batch in collator.prompt_batches(examples, batch_size, scoring=True):  # each ends where replies begin
        batch = batch.to(model.device)
        with head.taking(last=True), decoder_inputs(model, taken is not None) as embedded:
            cache = prompt_cache(model(**batch, use_cache=True, **last))
        first = head.logprobs[:, -1]
        if taken is not None:
            for b, i in enumerate(rows):
                features["label"][i] = head.hidden[b].cpu().numpy()
                if embedded:
                    video = video_positions(model.config, batch["input_ids"][b])
                    features["vision"][i] = embedded[0][b, video].float().amax(0).cpu().numpy()
        width = batch["input_ids"].shape[1]
        for j in range(len(targets)):
            ids = [replies[i][j] for i in rows]
            total = first[torch.arange(len(rows)), torch.tensor([reply[0] for reply in ids])]
            longest = max(len(reply) for reply in ids)
            if longest > 1:  # the rest of this label's reply, every row in one forward from the cache
                rest = torch.tensor([reply[1:] + [pad] * (longest - len(reply)) for reply in ids], device=model.device)
                inputs = torch.tensor([reply[:-1] + [pad] * (longest - len(reply)) for reply in ids],
                                      device=model.device)
                mask = torch.cat([batch["attention_mask"], torch.ones(len(rows), longest - 1, device=model.device,
                                                                      dtype=batch["attention_mask"].dtype)], 1)
                with head.taking(last=False):
                    model(input_ids=inputs, attention_mask=mask, use_cache=True, **{cache_argument(model): cache},
                          **mrope_positions(model, mask, width, 1))
                cache.crop(1 - longest)  # back to the prompt alone, for the next label (a negative count removes)
                wanted = head.logprobs.gather(-1, rest.unsqueeze(-1)).squeeze(-1)
                valid = torch.tensor([[k < len(reply) - 1 for k in range(longest - 1)] for reply in ids],
                                     device=wanted.device)
                total = total + (wanted * valid).sum(-1)
            for b, value in enumerate(total.tolist()):
                scores[rows[b], j] = value
    if taken is not None:
        taken.update({k: np.stack(v) for k, v in features.items() if all(x is not None for x in v)})
    return scores


def keeps_logits(model) -> bool:
    """Whether the model's forward can compute the last positions' logits only (`logits_to_keep`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(type(base).forward).parameters


class _Head:
    """Within `with`, each forward's next-token log-probabilities in float32, from the input of the model's output
    layer (taken as the layer starts, when DeepSpeed ZeRO-3 or FSDP have gathered its weight), a slice of the
    vocabulary at a time, so a bfloat16 model's weight is never copied whole."""

    CHUNK = 16384

    def __init__(self, model):
        self.layer, self.logprobs, self.hook, self.last = model.get_output_embeddings(), None, None, False
        self.hidden = None  # the last position's input to the output layer (the model's final state there)

    def taking(self, last: bool) -> "_Head":
        """`last`: the last position's only (for a family whose forward computes every position's logits)."""
        self.last = last
        return self

    def __enter__(self) -> "_Head":
        self.hook = self.layer.register_forward_pre_hook(self._take)
        return self

    def __exit__(self, *exc) -> None:
        self.hook.remove()

    def _take(self, layer, inputs) -> None:
        hidden = (inputs[0][:, -1:] if self.last else inputs[0]).float()
        self.hidden = inputs[0][:, -1].detach().float()
        with torch.autocast(hidden.device.type, enabled=False):  # (a trained model's forward runs under autocast)
            logits = torch.cat([torch.nn.functional.linear(hidden, rows.float())
                                for rows in layer.weight.split(self.CHUNK)], -1)
            if getattr(layer, "bias", None) is not None:
                logits = logits + layer.bias.float()
            self.logprobs = torch.log_softmax(logits, -1)


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
