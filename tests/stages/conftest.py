import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rbft.world.generate import Splits, generate_world
from rbft.world.tasks import TASKS


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory) -> Path:
    """A small world (24 training, 6 val clips) plus one truncated training video."""
    world = tmp_path_factory.mktemp("world")
    generate_world(world, seed=3, splits=Splits(train=24, val=6, test=8))
    clip = (world / "videos" / "clip_00000.mp4").read_bytes()
    (world / "videos" / "broken.mp4").write_bytes(clip[: len(clip) // 2])
    with open(world / "home-security.jsonl", "a") as f:
        f.write(json.dumps({"id": "broken", "video": "videos/broken.mp4", "label": "normal", "split": "train"}) + "\n")
    return world


def write_config(folder: Path, world_dir: Path, training: dict | None = None, extra: dict | None = None,
                 **rationales) -> Path:
    """An experiment YAML in `folder` over the world (a copy of its manifest, so edits stay local)."""
    manifest = folder / "home-security.jsonl"
    if not manifest.exists():
        shutil.copy(world_dir / "home-security.jsonl", manifest)
        (folder / "videos").symlink_to(world_dir / "videos")
        for ground_truth in ("boxes.jsonl", "home-security.scene-rationales.jsonl"):  # what the world knows
            shutil.copy(world_dir / ground_truth, folder / ground_truth)
    config = {"name": "t", "task": TASKS["home-security"].model_dump(),
              "data": {"manifest": str(manifest), "max_pixels": 128 * 128, "decode_workers": 1},
              "model": {"name_or_path": "rbft-world-base", "dtype": "float32"},
              "rationales": {"max_new_tokens": 48, "batch_size": 2, **rationales},
              # select_min_val 0: the small world's 6 val clips (4 normal, 2 vague) still choose the best epoch
              "training": {"method": "full", "batch_size": 4, "gradient_accumulation": 1, "logging_steps": 1,
                           "select_min_val": 0,
                           "stage1": {"epochs": 1, "learning_rate": 2e-4},
                           "stage2": {"epochs": 2, "learning_rate": 2e-4}, **(training or {})},
              **(extra or {})}
    config["training"]["stage2"] = {"min_steps": 0, **config["training"]["stage2"]}  # steps as the epochs say
    path = folder / f"config{len(list(folder.glob('config*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def make_config(world_dir, tmp_path):
    """Write an experiment YAML over the world and return its path."""
    return lambda training=None, extra=None, **rationales: write_config(tmp_path, world_dir, training, extra,
                                                                       **rationales)


# other rationales (from a file: the shipped model's own are descriptions, which the filter refuses)
ABLATION = "file-rationales"
BUDGET = {"videos": [12]}  # a label-budget point: 12 of the 24 labelled videos


@pytest.fixture(scope="session")
def finished_run(world_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(config, run folder) of one whole `rbft run` on the small world: scene rationales, an ablation and a
    label-budget point."""
    from rbft.pipeline import run
    from rbft.config import load_config

    folder = tmp_path_factory.mktemp("finished")
    ablations = {ABLATION: {"rationales": {"source": "file",
                                           "file": str(folder / "home-security.scene-rationales.jsonl")}}}
    # calibrated on the small world's 6 val clips (4 normal, 2 vague), below the default minimum of 3 of each label
    config = write_config(folder, world_dir, source="scene", extra={"ablations": ablations, "label_budget": BUDGET,
                                                                    "eval": {"calibration_min_val": 0}})
    run(load_config(config), folder / "run", log=lambda m: None)
    return config, folder / "run"


def rbft(*args, env=None, **kw) -> subprocess.Popen:
    """`python -m rbft ARGS` in a subprocess, its output captured."""
    return subprocess.Popen([sys.executable, "-m", "rbft", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


@pytest.fixture(scope="session")
def server():
    """`rbft serve` with the shipped model on 127.0.0.1 (a free port); yields its base URL."""
    with serving("rbft-world-base") as url:
        yield url


@contextlib.contextmanager
def serving(model):
    """`rbft serve --model MODEL` on 127.0.0.1 (a free port) while in `with`; gives its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "rbft", "serve", "--model", str(model), "--port", "0",
                             "--dtype", "float32"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    url = None
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("rbft serve exited before it served")
        match = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        url = match.group(1) if match else None
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
