"""The vision tower's warm-up: before the base model learns to talk, its vision tower learns to see.

Real VLMs start from a vision encoder pretrained on its own (CLIP, SigLIP); a tiny model
trained from random weights on captions alone learns the scene, which covers the whole
picture, long before the subject, which covers a few patches, and then names the
subject the scene makes likely. So the recipe can first train the Qwen2-VL vision tower
(with its merger) on what the world's scene records know: the main subject, its colour,
the scene and the time of day, with two heads per fact over the tower's output tokens:

- the clip: the tokens max-pooled name the facts, so the patches that show the subject
  learn to carry it;
- the clip, everywhere: every token on its own names the same facts, so what the tower
  sees spreads over the picture and a language model that has not yet learnt where to
  look finds the subject in any average of the tokens (without this head, a warmed-up
  tower did not help the language model name the subject at all).

It trains through `rbft.training` like every other stage; the heads are dropped
afterwards and the tower stays in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rbft.data.collate import Example, VideoChatCollator
from rbft.training import train
from rbft.world.scenes import SCENES, SUBJECTS, SceneRecord
from rbft.world.sprites import RGB

# fact -> (its values, how to read it from a scene record)
FACTS: dict[str, tuple[tuple[str, ...], Callable[[SceneRecord], str]]] = {
    "subject": (SUBJECTS, lambda r: r.main.kind),
    "colour": (tuple(RGB), lambda r: r.main.colour),
    "scene": (SCENES, lambda r: r.scene),
    "time": (("day", "night"), lambda r: r.time),
}


def fact_ids(record: SceneRecord) -> list[int]:
    """The record's value of every fact, as class indices in `FACTS` order."""
    return [values.index(read(record)) for values, read in FACTS.values()]


class ClipClassifier(nn.Module):
    """A VLM's vision tower (and merger) with the warm-up's heads (see the module's docstring)."""

    def __init__(self, visual: nn.Module, width: int, dense: float = 1.0):
        super().__init__()
        self.visual, self.dense = visual, dense
        self.heads = nn.ModuleDict({name: nn.Linear(width, len(values)) for name, (values, _) in FACTS.items()})
        self.token_heads = nn.ModuleDict({name: nn.Linear(width, len(values)) for name, (values, _) in FACTS.items()})

    def _logits(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor):
        tokens = self.visual(pixel_values_videos, grid_thw=video_grid_thw).pooler_output
        merged = getattr(self.visual, "spatial_merge_size", 1) ** 2  # patches per output token
        sizes = (video_grid_thw.prod(-1) // merged).tolist()
        pooled = torch.stack([clip.max(0).values for clip in tokens.split(sizes)])
        return tokens, sizes, {name: head(pooled) for name, head in self.heads.items()}

    def logits(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each fact's logits for each clip, from its max-pooled tokens."""
        return self._logits(pixel_values_videos, video_grid_thw)[2]

    def forward(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        tokens, sizes, logits = self._logits(pixel_values_videos, video_grid_thw)
        out: dict[str, torch.Tensor] = {"logits": torch.cat(list(logits.values()), -1)}
        if labels is not None:
            cross = nn.functional.cross_entropy
            per_token = labels.repeat_interleave(torch.tensor(sizes, device=labels.device), dim=0)
            out["loss"] = sum(cross(logits[name], labels[:, i]) + self.dense * cross(head(tokens), per_token[:, i])
                              for i, (name, head) in enumerate(self.token_heads.items()))
        return out


class FactsCollator:
    """Examples (one per clip) to the vision tower's inputs and the clip's fact indices as `labels`."""

    def __init__(self, processor, frames: Callable[[Path], np.ndarray], records: dict[str, SceneRecord]):
        self.videos = VideoChatCollator(processor, frames).videos
        self.processor, self.records = processor, records

    def __call__(self, examples: Sequence[Example]) -> dict:
        clips, _ = self.videos(examples)
        batch = self.processor.video_processor(videos=clips, return_tensors="pt", do_sample_frames=False)
        return {"pixel_values_videos": batch["pixel_values_videos"], "video_grid_thw": batch["video_grid_thw"],
                "labels": torch.tensor([fact_ids(self.records[e.id]) for e in examples])}


@torch.no_grad()
def accuracy(classifier: ClipClassifier, collator: FactsCollator, examples: Sequence[Example],
             batch_size: int = 16) -> dict[str, float]:
    """For each fact, the share of `examples` the classifier names right."""
    classifier.eval()
    right = np.zeros(len(FACTS))
    for start in range(0, len(examples), batch_size):
        batch = collator(examples[start:start + batch_size])
        logits = classifier.logits(batch["pixel_values_videos"], batch["video_grid_thw"])
        right += np.array([(x.argmax(-1) == batch["labels"][:, i]).sum().item() for i, x in enumerate(logits.values())])
    return {name: round(float(r / len(examples)), 3) for name, r in zip(FACTS, right)}


def warm_up(model, processor, records: Sequence[SceneRecord], work: Path, frames: dict[Path, np.ndarray],
            settings, dense: float, held_out: int = 100) -> dict[str, dict[str, float]]:
    """Train `model`'s vision tower (in place) as a `ClipClassifier` of `records`' facts; returns its accuracy.

    The last `held_out` clips (a tenth at most) are left out of the warm-up and measured, next to as many
    warm-up clips, so the model card can say what the tower learnt and whether it only memorised.
    """
    held_out = min(held_out, len(records) // 10)
    examples = [Example(r.id, work / "videos" / f"{r.id}.mp4", "") for r in records]
    collator = FactsCollator(processor, frames.__getitem__, {r.id: r for r in records})
    classifier = ClipClassifier(model.model.visual, model.config.text_config.hidden_size, dense)
    fit, held = examples[:len(examples) - held_out], examples[len(examples) - held_out:]
    train(classifier, collator, fit, work / "warmup", settings)
    scores = {"train": accuracy(classifier, collator, fit[:max(held_out, 1)])}
    if held:
        scores["held_out"] = accuracy(classifier, collator, held)
    return scores
