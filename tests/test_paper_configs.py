"""The shipped configs under configs/: each validates offline, and the smoke config runs the whole pipeline
with tiny random models of the real families saved as model folders."""

import json
from pathlib import Path

import pytest

from rbft.config import load_config
from rbft.pipeline import run
from rbft.world.generate import Splits, generate_world

from .families import build

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_every_config_is_there():
    assert {p.stem for p in CONFIGS} >= {"smarthome-bench-authors-qwen2.5-vl-7b", "smarthome-bench-qwen2.5-vl-7b",
                                         "multihateclip-english-qwen2.5-vl-7b", "single-gpu-24gb",
                                         "multi-gpu-deepspeed", "cpu-smoke"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_offline(path):
    config = load_config(path)  # no model download, no data needed
    assert config.data.manifest.is_absolute() and config.seeds
    if path.stem != "cpu-smoke":
        assert config.data.max_pixels == 360 * 420 and config.data.num_frames == 8  # the authors' frames


def test_reproduction_config_follows_the_authors():
    config = load_config(next(p for p in CONFIGS if p.stem == "smarthome-bench-authors-qwen2.5-vl-7b"))
    t = config.training
    assert (t.method, t.train_vision, t.stage1.epochs, t.stage2.epochs) == ("full", True, 3, 3)
    assert (t.lr_scheduler, t.warmup_ratio, t.weight_decay) == ("cosine", 0.03, 0.1)
    assert list(config.task.labels) == ["normal", "abnormal"] and config.model.dtype == "bfloat16"
    assert config.rationales.source == "file" and config.rationales.file.name == "smarthome-authors.rationales.jsonl"


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    world = tmp_path_factory.mktemp("smoke-world")
    generate_world(world, seed=5, splits=Splits(train=8, val=4, test=6))
    return world


# about 40 s each: Qwen2.5-VL in the default tier, the other families with the slow tests
@pytest.mark.parametrize("family", [pytest.param("qwen2_vl", marks=pytest.mark.slow), "qwen2_5_vl",
                                    pytest.param("qwen3_vl", marks=pytest.mark.slow),
                                    pytest.param("smolvlm", marks=pytest.mark.slow)])
def test_cpu_smoke_config_runs_the_pipeline_with_a_tiny_model_folder(family, smoke_world, tmp_path):
    processor, model = build(family)
    folder = tmp_path / family
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    base = load_config(next(p for p in CONFIGS if p.stem == "cpu-smoke"))
    config = base.model_copy(update={
        "data": base.data.model_copy(update={"manifest": smoke_world / "home-security.jsonl"}),
        "model": base.model.model_copy(update={"name_or_path": str(folder)}),
        "rationales": base.rationales.model_copy(update={"max_new_tokens": 12, "min_words": 0})})
    out = tmp_path / "run"
    # rationale generation by the family's own model (random weights: what it writes is rejected, but written)
    facts = run(config, out, only="rationales", log=lambda m: None)
    assert facts["rationales"]["records"] == 8
    records = [json.loads(line) for line in (out / "rationales.jsonl").read_text().splitlines()]
    assert all(r["model"] == str(folder) and r["rationale"] is not None for r in records)
    # Stage I needs kept rationales: the world's ground truth stands in for what a trained model writes
    config = config.model_copy(update={"rationales": config.rationales.model_copy(update={"source": "scene"})})
    facts = run(config, out, log=lambda m: None)
    results = facts["results"]
    assert set(results["methods"]) == {"zero_shot", "probe", "direct_sft", "rbft"}
    assert all(m["n"] == 6 for m in results["methods"].values())
    # the family's features reach the probes: the label position always, the video's tokens where found
    assert set(results["representations"]["models"]) == {"base", "direct_sft", "m_inter", "rbft"}
    for name in ("stage1", "rbft", "direct_sft"):
        assert (out / "models" / name / "seed0" / "model.safetensors").exists()
    assert (out / "report.html").exists()


def test_a_hub_name_offline_and_not_cached_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    code = ("from rbft.modeling import load_processor\n"
            "from rbft.errors import ConfigError\n"
            "try:\n    load_processor('Qwen/Qwen2.5-VL-7B-Instruct')\n"
            "except ConfigError as e:\n    print(e)\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "needs network access or a copy in the Hugging Face cache" in result.stdout, result.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_qwen2_5_vl(tmp_path_factory):
    processor, model = build("qwen2_5_vl")
    folder = tmp_path_factory.mktemp("qwen2_5_vl")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem != "cpu-smoke"], ids=lambda p: p.stem)
def test_each_paper_config_trains_as_written_with_a_tiny_model(path, smoke_world, tiny_qwen2_5_vl, tmp_path):
    """Every setting of the config as it is (method, tower, dtype, attention, checkpointing, batches, rates),
    but the model (a tiny random Qwen2.5-VL folder), the data (the world) and the budget (one epoch, one seed)."""
    config = load_config(path)
    t = config.training
    budget = {"epochs": 1.0, "min_steps": 0}
    config = config.model_copy(update={
        "data": config.data.model_copy(update={"manifest": smoke_world / "home-security.jsonl"}),
        "model": config.model.model_copy(update={"name_or_path": str(tiny_qwen2_5_vl)}),
        "task": load_config(next(p for p in CONFIGS if p.stem == "cpu-smoke")).task,  # the world's labels
        # select_min_val 0: the world's few val clips still score each epoch, as the config's select_best says
        "training": t.model_copy(update={"stage1": t.stage1.model_copy(update=budget),
                                         "stage2": t.stage2.model_copy(update=budget), "select_min_val": 0}),
        "seeds": [0]})
    out = tmp_path / "run"
    run(config, out, only="direct_sft", log=lambda m: None)
    model = out / "models" / "direct_sft" / "seed0"
    assert (model / "rbft_task.json").exists()
    assert (model / ("adapter_config.json" if t.method == "lora" else "model.safetensors")).exists()
    log = [json.loads(line) for line in (out / "train" / "direct_sft" / "seed0" / "train_log.jsonl").read_text().splitlines()]
    steps = -(-8 // (t.batch_size * t.gradient_accumulation))  # 8 training clips, one epoch
    assert max(r["step"] for r in log) == steps
    assert [r["epoch"] for r in log if "val_score" in r] == ([1.0] if t.select_best else [])
