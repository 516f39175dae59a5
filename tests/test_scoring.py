"""Label scoring at real model size: last-position logits only, one cache for every label, float32 scores."""

import numpy as np
import pytest
import torch

from rbft.data.collate import VideoChatCollator
from rbft.data.conversation import Example
from rbft.modeling import load_model, load_processor
from rbft.scoring import _Head, label_logprobs, label_logprobs_full
from rbft.world.generate import make_clip

TARGETS = ["<normal>", "<abnormal>", "<vague>"]


def examples(n: int = 4) -> list[Example]:
    return [Example(str(i), "v", "Is anything wrong here?" + " Look closely." * i, system="An expert.") for i in range(n)]


def test_the_prompt_gives_its_last_positions_logits_only_and_one_cache_serves_every_label():
    model = load_model("rbft-world-base", dtype="float32")
    clip = make_clip(1, 0, "x")[1][::3][:4]
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: clip)
    head_rows, cache_rows = [], []

    def at_head(layer, inputs):
        head_rows.append(tuple(inputs[0].shape[:2]))  # (batch, positions) the output layer computes

    def at_model(module, args, kwargs):
        cache = kwargs.get("past_key_values") or kwargs.get("cache")
        if cache is not None and cache.get_seq_length() > 0:
            cache_rows.append(cache.layers[0].keys.shape[0])

    hooks = [model.get_output_embeddings().register_forward_pre_hook(at_head),
             model.register_forward_pre_hook(at_model, with_kwargs=True)]
    try:
        fast = label_logprobs(model, collator, examples(), TARGETS, batch_size=2)
    finally:
        for hook in hooks:
            hook.remove()
    reference = label_logprobs_full(model, collator, examples(), TARGETS, batch_size=1)
    assert np.abs(fast - reference).max() < 1e-4
    replies = [len(collator.reply_ids(Example("0", "v", "?", target, "An expert."))) for target in TARGETS]
    # per batch of 2 prompts: the prompt's last position, then each label's reply but its last token (the labels
    # encode as pieces of different counts: `<normal>` as one fewer than `<abnormal>`)
    assert len(set(replies)) > 1 and head_rows == [(2, 1), *[(2, n - 1) for n in replies]] * 2
    assert cache_rows == [2] * 6  # the continuation forwards see the prompts' cache, never repeated per label


@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "under-autocast"])  # a trained model's forward
def test_a_bfloat16_output_layer_is_scored_in_float32(autocast):
    layer = load_model("rbft-world-base", dtype="bfloat16").get_output_embeddings()
    torch.manual_seed(0)
    hidden = (torch.randn(4, 1, layer.in_features) * 3).to(torch.bfloat16)
    exact = torch.log_softmax(hidden.double() @ layer.weight.double().T, -1)
    head = _Head.__new__(_Head)
    head.last, head.CHUNK = True, 100  # slices of the vocabulary (822 rows) as on a real model
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        head._take(layer, (hidden,))
    ours = (head.logprobs.double() - exact).abs().max()
    rounded = (torch.log_softmax(layer(hidden).float(), -1).double() - exact).abs().max()
    assert head.logprobs.dtype == torch.float32 and ours < 1e-5
    assert rounded > 100 * ours  # what taking the bfloat16 logits would cost
