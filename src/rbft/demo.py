"""`rbft demo`: the paper's comparison on the built-in world, offline on a CPU.

The world (home-security clips with their scene records) is drawn into the demo folder,
an experiment config is written beside it, and `rbft run`'s runner does the rest:
the shipped base model writes its own rationales (label-conditioned, as the authors
did), Stage I and Stage II give RB-FT, direct SFT gets the same label budget, and all
methods (zero-shot included) are scored on the same test clips, over 2 seeds. Beside it,
the teacher arm: RB-FT on the world's ground-truth rationales (`rationales.source: scene`,
the rationales a perfect teacher would write), the same split, seeds and settings; it says
whether Stage I can help at all on this world, whatever the base model writes.
`--study` adds the label-budget curve (20 and 80 labelled clips besides all 160), which
takes about 6 minutes more on 2 cores; `--quick` draws fewer clips and runs one seed without the teacher
arm, for a first look and for tests.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from rbft.world.generate import WORLD_VERSION, Splits, experiment, generate_world, has_ground_truth, write_ground_truth
from rbft.world.tasks import TASKS

TASK = "home-security"


@dataclass(frozen=True)
class Size:
    name: str
    splits: Splits
    seeds: tuple[int, ...]
    stage1_epochs: float
    stage2_min_steps: int
    ablations: dict  # arms beside the main run, name -> the settings that differ
    label_budget: dict  # the label-budget curve's points (besides the whole train split) and their seeds
    batch_size: int = 8


TEACHER = {"ground-truth-rationales": {"rationales": {"source": "scene"}}}
FULL = Size("demo", Splits(train=160, val=40, test=300), (0, 1), 2, 60, TEACHER, {})
# the same run as the demo's (a study after `rbft demo` trains only the budget's points) and the curve
STUDY = dataclasses.replace(FULL, name="demo-study", label_budget={"videos": [20, 80]})
# a first look: RB-FT against direct SFT on few clips, one seed, no teacher arm; the label stages take 60 steps of
# 4 clips (the 240 draws of 30 steps of 8, in twice the steps: docs/results.md)
QUICK = Size("demo-quick", Splits(train=64, val=16, test=64), (0,), 1, 60, {}, {}, batch_size=4)


def demo_config(manifest: str, size: Size = FULL) -> dict:
    """The demo's experiment (as YAML data) over the world manifest at `manifest` (relative to the config)."""
    config = experiment(TASK, TASKS[TASK], manifest)
    config["name"] = size.name
    config["training"]["stage1"]["epochs"] = size.stage1_epochs
    config["training"]["stage2"]["min_steps"] = size.stage2_min_steps
    config["training"]["batch_size"] = size.batch_size
    config["seeds"] = list(size.seeds)
    # when the filter keeps too few of the base model's rationales (a model that writes descriptions, not
    # rationales), the demo runs every other arm and says why RB-FT on its own rationales is missing
    config["rationales"]["on_too_few"] = "skip"
    if size.ablations:
        config["ablations"] = size.ablations
    if size.label_budget:
        config["label_budget"] = size.label_budget
    return config


def prepare(config_path: Path, size: Size = FULL, on_clip=None) -> Path:
    """Draw the demo's world beside `config_path` (unless already there) and write the config; returns its path."""
    world = config_path.parent / ("world-quick" if size.name == QUICK.name else "world")
    if not _drawn(world, size):
        generate_world(world, seed=0, splits=size.splits, on_clip=on_clip)
    elif not has_ground_truth(world):  # drawn by an rbft that did not write it yet
        write_ground_truth(world)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(demo_config(f"{world.name}/{TASK}.jsonl", size), sort_keys=False, width=120))
    return config_path


def _drawn(world: Path, size: Size) -> bool:
    """Whether `world` already holds this demo's clips (same world version, seed and splits)."""
    try:
        info = json.loads((world / "world.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("version") == WORLD_VERSION and info.get("seed") == 0 and info.get("splits") == size.splits.__dict__
