"""The vision tower's warm-up: before the base model learns to talk, its vision tower learns to see.

Real VLMs start from a vision encoder pretrained on its own (CLIP, SigLIP); a tiny model
trained from random weights on captions alone learns the scene, which covers the whole
picture, long before the subject, which covers a few patches, and then names the
subject the scene makes likely. So the recipe can first train the Qwen2-VL vision tower
(with its merger) on what the world's scene records know: the main subject, its colour,
its action, the scene and the time of day, with two heads per fact over the tower's output
tokens (a frame pair shows much of an action: a pose, a tipped trash can, a lit bell, a
ball, a step; the towers warmed up without the action left the language model naming 0.395
to 0.47 of `benchmarks/base_model.py`'s held-out clips' actions, the first with it 0.680):

- the clip: the tokens max-pooled name the facts, so the patches that show the subject
  learn to carry it;
- the clip, everywhere: every token on its own names the same facts, so what the tower
  sees spreads over the picture and a language model that has not yet learnt where to
  look finds the subject in any average of the tokens (without this head, a warmed-up
  tower did not help the language model name the subject at all).

Its unit is a pair of frames, not a clip: the tower sees a clip as pairs of consecutive
sampled frames (Qwen2-VL's temporal patches) and attends within each pair only, so a
clip of 8 frames is 4 independent views of the same facts, and each of them, plain and
mirrored, is a training example. A from-scratch ViT learns slowly per example (a small
CNN names 86% of held-out clips' subjects after 2 minutes of training, this tower 80%
after 13); at the same cost per step, 32 pairs teach it more than 8 whole clips (subject
named right on 0.65 against 0.55 of held-out clips after 400 steps).

It trains through `rbft.training` like every other stage; the heads are dropped
afterwards and the tower stays in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rbft.config import StageConfig, TrainingConfig
from rbft.modeling import vision_tower
from rbft.training import train
from rbft.world.scenes import ACTIONS, SCENES, SUBJECTS, SceneRecord
from rbft.world.sprites import RGB

# fact -> (its values, how to read it from a scene record)
FACTS: dict[str, tuple[tuple[str, ...], Callable[[SceneRecord], str]]] = {
    "subject": (SUBJECTS, lambda r: r.main.kind),
    "colour": (tuple(RGB), lambda r: r.main.colour),
    "scene": (SCENES, lambda r: r.scene),
    "time": (("day", "night"), lambda r: r.time),
    "action": (ACTIONS, lambda r: r.main.action),
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
        """Each fact's logits for each video (a clip or a frame pair), from its max-pooled tokens."""
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


@dataclass(frozen=True)
class View:
    """One warm-up example: a temporal patch (`pair`: frames 2k and 2k+1 of the sampled frames) of a clip."""

    id: str  # the clip's
    video: Path
    pair: int
    mirrored: bool = False


def views(records: Sequence[SceneRecord], videos: Path, frames: dict[Path, np.ndarray],
          mirrored: bool = True) -> list[View]:
    """Every temporal patch of every clip (`videos/<id>.mp4`, sampled as `frames`) and, with `mirrored`, its mirror."""
    paths = [(r.id, videos / f"{r.id}.mp4") for r in records]
    return [View(clip, path, k, flip) for clip, path in paths for k in range(len(frames[path]) // 2)
            for flip in ((False, True) if mirrored else (False,))]


class FactsCollator:
    """`View`s to the vision tower's inputs (2-frame videos) and their clips' fact indices as `labels`."""

    def __init__(self, processor, frames: Callable[[Path], np.ndarray], records: dict[str, SceneRecord]):
        self.processor, self.frames, self.records = processor, frames, records

    def __call__(self, batch: Sequence[View]) -> dict:
        clips = []
        for view in batch:
            pair = self.frames(view.video)[2 * view.pair:2 * view.pair + 2]
            clips.append(np.ascontiguousarray(pair[:, :, ::-1] if view.mirrored else pair))
        out = self.processor.video_processor(videos=clips, return_tensors="pt", do_sample_frames=False)
        return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"],
                "labels": torch.tensor([fact_ids(self.records[view.id]) for view in batch])}


@torch.no_grad()
def accuracy(classifier: ClipClassifier, collator: FactsCollator, examples: Sequence[View],
             batch_size: int = 32) -> dict[str, float]:
    """For each fact, the share of `examples` (frame pairs) the classifier names right."""
    classifier.eval()
    right = np.zeros(len(FACTS))
    for start in range(0, len(examples), batch_size):
        batch = collator(examples[start:start + batch_size])
        logits = classifier.logits(batch["pixel_values_videos"], batch["video_grid_thw"])
        right += np.array([(x.argmax(-1) == batch["labels"][:, i]).sum().item() for i, x in enumerate(logits.values())])
    return {name: round(float(r / len(examples)), 3) for name, r in zip(FACTS, right)}


def warm_up(model, processor, records: Sequence[SceneRecord], work: Path, frames: dict[Path, np.ndarray],
            training: TrainingConfig, stage: StageConfig, seed: int, dense: float,
            held_out: int = 100) -> dict[str, dict[str, float]]:
    """Train `model`'s vision tower (in place) as a `ClipClassifier` of `records`' facts; returns its accuracy.

    It trains on every frame pair of the clips, plain and mirrored (see `views`). The last `held_out`
    clips (a tenth at most) are left out and their frame pairs measured, next to as many training
    clips' pairs, so the model card can say what the tower learnt and whether it only memorised.
    """
    held_out = min(held_out, len(records) // 10)
    fit, held = records[:len(records) - held_out], records[len(records) - held_out:]
    videos = work / "videos"
    collator = FactsCollator(processor, frames.__getitem__, {r.id: r for r in records})
    classifier = ClipClassifier(*vision_tower(model), dense)
    train(classifier, collator, views(fit, videos, frames), work / "warmup", training, stage, seed)
    scores = {"train": accuracy(classifier, collator, views(fit[:max(held_out, 1)], videos, frames, False))}
    if held:
        scores["held_out"] = accuracy(classifier, collator, views(held, videos, frames, False))
    return scores
