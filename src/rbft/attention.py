"""Where the label token looks: attention from the label to the video tokens (the paper's Figure 2).

`label_attention` runs the conversation (video, P_label, the label as the reply) once with
attention weights returned (the model must be loaded with `attn_implementation="eager"`;
sdpa returns none), takes the rows of the reply's label tokens and the columns of the
video tokens, averages over heads and layers, and lays the result on each temporal patch's
grid (`label_attentions`: many conversations, a padded batch a forward). Default layers: the
later half of the language model, where attention follows what the prediction rests on; the
early layers attend mostly by position. `focus` compares a map with known boxes: the share of
attention inside them over the share of area they cover (1: no preference; above 1:
concentrated on them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rbft.data.collate import IGNORE
from rbft.data.conversation import Example
from rbft.modeling import video_grid, video_positions


def label_attention(model, collator, example: Example, layers: Sequence[int] | None = None) -> np.ndarray:
    """(T, H, W) attention mass of the label on the video, per temporal patch and merged patch; sums to 1."""
    return label_attentions(model, collator, [example], layers)[0]


@torch.no_grad()
def label_attentions(model, collator, examples: Sequence[Example], layers: Sequence[int] | None = None,
                     batch_size: int = 8, max_bytes: int = 2**30) -> list[np.ndarray]:
    """`label_attention` of each example, up to `batch_size` conversations a forward (padding is masked, so each
    row's map is the one it has alone), fewer where every layer's attention weights of the batch would take more
    than `max_bytes` (a 7B model over a few thousand tokens holds gigabytes of them for one conversation)."""
    model.eval()
    text = model.config.get_text_config()
    grids, start = [], 0
    while start < len(examples):
        batch = collator(examples[start:start + batch_size])
        width = batch["input_ids"].shape[1]
        size = text.num_hidden_layers * getattr(text, "num_attention_heads", 1) * width * width * 4  # float32 at most
        rows = max(1, min(batch_size, max_bytes // size))
        if rows < len(batch["input_ids"]):
            batch = collator(examples[start:start + rows])
        chunk, start = examples[start:start + rows], start + rows
        batch = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        labels = batch.pop("labels")
        out = model(**batch, output_attentions=True)
        if not out.attentions or out.attentions[0] is None:
            raise ValueError("the model returned no attention weights: load it with attn_implementation='eager'")
        n_layers = len(out.attentions)
        chosen = list(layers) if layers is not None else list(range(n_layers // 2, n_layers))
        for row, example in enumerate(chunk):
            ids = batch["input_ids"][row]
            target = collator.processor.tokenizer(example.target, add_special_tokens=False)["input_ids"]
            reply = (labels[row] != IGNORE).nonzero().flatten()[:len(target)]  # the label's tokens, not end of turn
            video = video_positions(model.config, ids)
            weights = torch.stack([out.attentions[i][row].float() for i in chosen]).mean(dim=(0, 1))  # (seq, seq)
            mass = weights[reply][:, video].mean(0)
            own = {k: v[row:row + 1] for k, v in batch.items() if k == "video_grid_thw"}
            shape = video_grid(own, collator.processor, len(video),
                               lambda example=example: len(collator.videos([example])[0][0]))
            grid = mass.reshape(shape).cpu().numpy()
            grids.append(grid / grid.sum())
    return grids


def scaled(grid: np.ndarray) -> np.ndarray:
    """A map scaled to 0-1 for display."""
    low, high = grid.min(), grid.max()
    return (grid - low) / (high - low) if high > low else np.zeros_like(grid)


def coverage(boxes: Sequence[Sequence[int] | None], size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """The share of each grid cell that the union of `boxes` (x0, y0, x1, y1 in pixels of a `size` (W, H)
    picture) covers."""
    width, height = size
    mask = np.zeros((height, width), bool)
    for box in boxes:
        if box is not None:
            x0, y0, x1, y1 = box
            mask[max(0, y0):min(height, y1), max(0, x0):min(width, x1)] = True
    rows, cols = grid
    cells = mask[: height - height % rows, : width - width % cols].reshape(rows, height // rows, cols, width // cols)
    return cells.mean(axis=(1, 3))


def focus(grid: np.ndarray, cover: np.ndarray) -> float | None:
    """Share of attention on the covered cells over the share of area they cover; None without boxes.

    `grid` and `cover` are (T, H, W); each temporal patch's coverage is its frames' union.
    """
    area = cover.mean()
    if area == 0:
        return None
    return float((grid * cover).sum() / grid.sum() / area)
