"""Stage I -> Stage II and direct SFT through `rbft run`: chaining, outputs, resume, several processes."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from rbft.config import load_config
from rbft.modeling import SHIPPED_MODEL, load_model
from rbft.pipeline import run

from .conftest import rbft
from .test_rationales import kill_after, lines


def weights(folder) -> dict:
    return load_file(str(folder / "model.safetensors"))


def differs(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_stages_chain_and_write_loadable_models(finished_run):
    config_path, out = finished_run
    config = load_config(config_path)
    base = weights(SHIPPED_MODEL)
    m_inter, m_star, direct = (out / "models" / name / "seed0" for name in ("stage1", "rbft", "direct_sft"))
    for folder in (m_inter, m_star, direct):
        model = AutoModelForImageTextToText.from_pretrained(folder)  # a standard folder
        assert AutoProcessor.from_pretrained(folder).video_processor is not None
        assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in base.values())
    assert differs(base, weights(m_inter)) and differs(weights(m_inter), weights(m_star))
    assert differs(weights(m_star), weights(direct))
    # Stage II and direct SFT: same settings and budget, each keeps its best epoch by val macro-F1
    for stage in ("stage2", "direct_sft"):
        log = lines(out / "train" / stage / "seed0" / "train_log.jsonl")
        assert [row["epoch"] for row in log if "val_score" in row] == [1.0, 2.0]
        assert json.loads((out / "train" / stage / "seed0" / "best.json").read_text())["epoch"] in (1.0, 2.0)
        assert not (out / "train" / stage / "seed0" / "checkpoints").exists()  # removed once done
    steps = {s: max(r["step"] for r in lines(out / "train" / s / "seed0" / "train_log.jsonl")) for s in ("stage2", "direct_sft")}
    assert steps["stage2"] == steps["direct_sft"] == 2 * 6  # 24 videos, batch 4, 2 epochs
    # evaluation: every method on the same test videos, label scores kept, results.json as DESIGN.md says
    results = json.loads((out / "results.json").read_text())
    assert results["labels"] == list(config.task.labels) and results["seeds"] == [0]
    assert list(results["methods"]) == ["zero_shot", "probe", "direct_sft", "rbft"]
    assert results["decisions"].startswith("calibrated")  # the default, with a val split
    labels = list(config.task.labels)
    for name, m in results["methods"].items():
        lo, hi = m["ci95"]["macro_f1"]
        assert lo <= m["macro_f1"] <= hi
        rows = lines(out / "predictions" / (name + ("" if name in ("zero_shot", "probe") else "-seed0") + ".jsonl"))
        assert [r["id"] for r in rows] == [f"clip_{i:05d}" for i in range(30, 38)]
        assert all(r["raw_predicted"] == max(r["scores"], key=r["scores"].get) for r in rows)
        # the decision: the scores plus tau x log of the train split's label shares (add-one smoothed)
        prior = np.log((np.array([sum(v["label"] == x for v in lines(config.data.manifest)
                                      if v["split"] == "train" and v["id"] != "broken") for x in labels]) + 1) / (24 + 3))
        assert m["tau"] == [rows[0]["tau"]]
        assert [r["predicted"] for r in rows] == [
            labels[int(np.argmax([r["scores"][x] for x in labels] + r["tau"] * prior))] for r in rows]
        assert m["accuracy"] == sum(r["predicted"] == r["label"] for r in rows) / 8 and m["n"] == 8
        assert m["raw"]["accuracy"] == sum(r["raw_predicted"] == r["label"] for r in rows) / 8
        assert sum(map(sum, m["confusion_matrix"])) == 8 and set(m["per_class"]) == set(config.task.labels)
    assert lines(out / "predictions" / "probe.jsonl")[0]["probe"]["features"] in ("label", "vision", "both")
    # what each model represents: a probe on the features every model's eval forward saved (train, val and test)
    for name in ("zero_shot", "m_inter-seed0", "rbft-seed0", "direct_sft-seed0"):
        with np.load(out / "features" / f"{name}.npz") as saved:
            assert saved["label"].shape == saved["vision"].shape == (24 + 6 + 8, 256)
    representations = results["representations"]["models"]
    assert list(representations) == ["base", "direct_sft", "m_inter", "rbft"]
    for m in representations.values():
        assert m["ci95"][0] <= m["macro_f1"] <= m["ci95"][1] and len(m["per_seed"]) == 1
    comparison = results["comparisons"]["rbft_minus_direct_sft"]
    d = comparison["delta"]["macro_f1"]
    assert d["ci95"][0] <= d["delta"] <= d["ci95"][1]
    assert d["delta"] == pytest.approx(results["methods"]["rbft"]["macro_f1"] - results["methods"]["direct_sft"]["macro_f1"])
    assert len(comparison["mcnemar"]) == 1
    assert {"check", "rationales", "stage1-seed0", "stage2-seed0", "direct_sft-seed0", "eval-rbft-seed0"} <= set(results["timings"])
    # attention: a figure per chosen video, and the focus of each method on the world's boxes
    attention = json.loads((out / "results.json").read_text())["attention"]
    assert sorted(p.name for p in (out / "attention").glob("*.png")) == [f"{i}.png" for i in attention["videos"]]
    assert len(attention["videos"]) == 4 and attention["focus_videos"] == 8
    assert set(attention["focus"]) == {"direct_sft", "rbft"} and all(f > 0 for f in attention["focus"].values())
    # rbft predict: the trained classifier on a test video gives what the eval stage wrote; a broken video is named
    first = lines(out / "predictions" / "rbft-seed0.jsonl")[0]
    video = config.data.manifest.parent / "videos" / f"{first['id']}.mp4"
    proc = rbft("predict", video, config.data.manifest.parent / "videos" / "broken.mp4",
                "--model", out / "models" / "rbft" / "seed0", "--json")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    good, bad = json.loads(stdout)
    assert good["predicted"] == first["predicted"] and good["raw_predicted"] == first["raw_predicted"]
    assert good["scores"] == pytest.approx(first["scores"], abs=1e-4)
    assert bad["error"] == "truncated"
    calibration = json.loads((out / "models" / "rbft" / "seed0" / "rbft_task.json").read_text())["calibration"]
    assert calibration["tau"] == first["tau"] and len(calibration["log_prior"]) == 3
    messages = []
    run(config, out, log=messages.append)
    # rationales, stage1, stage2, direct_sft here; in the ablations, what each did not borrow
    assert sum("done with these settings; skipped" in m for m in messages) == 4 + 4 + 4
    assert not any(m.startswith("eval:") for m in messages)  # predictions are not redone either
    assert any(m.startswith("report: done with these results") for m in messages)  # nor the report


def test_ablations_run_whole_and_borrow_what_is_the_same(finished_run):
    config_path, out = finished_run
    results = json.loads((out / "results.json").read_text())
    assert set(results["ablations"]) == {"file-rationales"}
    for folder in (out / "ablations" / "file-rationales", out / "label_budget" / "labels-12"):
        assert not (folder / "predictions" / "zero_shot.jsonl").exists()  # zero-shot is the main run's
    ablation = results["ablations"]["file-rationales"]
    assert set(ablation["methods"]) == {"direct_sft", "rbft"}
    assert "macro_f1" in ablation["comparisons"]["rbft_minus_direct_sft"]["delta"]
    # other rationales: Stage I and II trained again, direct SFT and its predictions borrowed (hard links)
    other_run = out / "ablations" / "file-rationales"
    assert lines(other_run / "rationales.jsonl")[0]["source"] == "file"
    assert "borrowed_from" not in json.loads((other_run / "done" / "stage1-seed0.json").read_text())
    assert json.loads((other_run / "done" / "direct_sft-seed0.json").read_text())["borrowed_from"] == str(out)
    borrowed = other_run / "models" / "direct_sft" / "seed0" / "model.safetensors"
    assert borrowed.stat().st_ino == (out / "models" / "direct_sft" / "seed0" / "model.safetensors").stat().st_ino


def test_the_label_budget_trains_again_on_fewer_videos_and_draws_its_curve(finished_run):
    _, out = finished_run
    results = json.loads((out / "results.json").read_text())
    # 12 of the 24 labelled videos (each label's share), so every stage trains again, on 12
    few = out / "label_budget" / "labels-12"
    assert max(r["step"] for r in lines(few / "train" / "direct_sft" / "seed0" / "train_log.jsonl")) == 2 * 3
    assert len(lines(few / "rationales.jsonl")) == 12
    assert json.loads((few / "done" / "rationales.json").read_text()).get("borrowed_from") is None
    curve = results["label_budget"]
    assert [p["videos"] for p in curve["points"]] == [12, 24]  # the main run is the last point
    few_figures = json.loads((few / "results.json").read_text())["methods"]
    for point, methods in zip(curve["points"], (few_figures, results["methods"])):
        for name in ("direct_sft", "rbft"):
            assert point["methods"][name]["macro_f1"] == methods[name]["macro_f1"]
            assert point["methods"][name]["ci95"] == methods[name]["ci95"]["macro_f1"]
    assert curve["points"][1]["rbft_minus_direct_sft"] == results["comparisons"]["rbft_minus_direct_sft"]["delta"]["macro_f1"]
    assert curve["zero_shot_macro_f1"] == results["methods"]["zero_shot"]["macro_f1"]
    predicted = [json.loads(x)["predicted"] for x in (out / "predictions" / "rbft-seed0.jsonl").read_text().splitlines()]
    assert results["methods"]["rbft"]["predicted_counts"] == [{x: predicted.count(x) for x in results["labels"]}]
    support = [c["support"] for c in results["methods"]["zero_shot"]["per_class"].values()]
    p = max(support) / sum(support)
    assert curve["majority_macro_f1"] == pytest.approx(2 * p / (1 + p) / len(support))


def test_free_generation_eval_reports_its_parse_failures(finished_run, tmp_path):
    config_path, finished = finished_run
    out = tmp_path / "run"
    shutil.copytree(finished, out, symlinks=True)
    config = load_config(config_path)
    config = config.model_copy(update={"eval": config.eval.model_copy(update={"mode": "generate",
                                                                             "max_new_tokens": 16})})
    run(config, out, only="eval", log=lambda m: None)
    results = json.loads((out / "results.json").read_text())
    assert results["decisions"].startswith("raw")
    for name, m in results["methods"].items():
        if name == "probe":  # a linear classifier on the base model's features: no reply to parse
            continue
        rows = lines(out / "predictions" / (name + ("" if name == "zero_shot" else "-seed0") + ".jsonl"))
        assert all(r["reply"] and "scores" not in r for r in rows)
        assert all(r["predicted"] is None or r["reply"].lower().count(r["predicted"]) for r in rows)
        failed = sum(r["predicted"] is None for r in rows)
        assert m["parse_failure_rate"] == failed / len(rows)
        assert m["accuracy"] == sum(r["predicted"] == r["label"] for r in rows) / len(rows)  # unparsed: wrong



@pytest.mark.parametrize("k, expected", [(0, 2.0), (7, 0.0)])  # the first patch's top-left cell; its top-right one
def test_attention_focus_is_the_share_on_the_boxes_where_the_label_is_made_to_look(finished_run, tmp_path,
                                                                                    monkeypatch, k, expected):
    """Boxes on the left half of every frame (half the area) and every query forced onto the k-th video token:
    the focus must be 1 / 0.5 where that token's cell is on the left, 0 where it is on the right."""
    import rbft.stages.attention as stage
    from rbft.data.cache import FrameCache
    from rbft.data.collate import VideoChatCollator
    from rbft.data.jsonl import read_jsonl, write_jsonl
    from rbft.data.manifest import load_manifest
    from rbft.modeling import load_processor
    from rbft.prompts import label_examples

    config_path, out = finished_run
    config = load_config(config_path)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(config.data.manifest, data / "home-security.jsonl")
    (data / "videos").symlink_to(config.data.manifest.parent / "videos")
    write_jsonl(data / "boxes.jsonl", [{**row, "frames": [[[0, 0, row["size"][0] // 2, row["size"][1]]]] * len(row["frames"])}
                                       for row in read_jsonl(config.data.manifest.parent / "boxes.jsonl")])
    config = config.model_copy(update={"data": config.data.model_copy(update={"manifest": data / "home-security.jsonl"})})
    test = [v for v in load_manifest(config.data.manifest, config.task.labels) if v.split == "test"]
    cache, sampling = FrameCache(), config.data.sampling()
    frames = lambda path: cache.load(path, sampling)  # noqa: E731
    models = {m: (out / "models" / m / "seed0", out / "predictions" / f"{m}-seed0.jsonl") for m in ("direct_sft", "rbft")}
    collator = VideoChatCollator(load_processor(models["rbft"][0]), frames)
    ids = collator(label_examples(config.task, test[:1]))["input_ids"][0]
    loaded = stage.load_for_videos

    def forced(*args, **kwargs):
        model, collator = loaded(*args, **kwargs)
        column = (ids == model.config.video_token_id).nonzero().flatten()[k]

        def force(module, inputs, output):
            output[1].zero_()
            output[1][..., column] = 1

        for layer in model.model.language_model.layers:
            layer.self_attn.register_forward_hook(force)
        return model, collator

    monkeypatch.setattr(stage, "load_for_videos", forced)
    facts = stage.draw(config, test, frames, models, tmp_path / "attention", count=1, log=lambda m: None)
    assert facts["focus_videos"] == len(test) == 8
    assert facts["focus"] == {"direct_sft": pytest.approx(expected), "rbft": pytest.approx(expected)}

def test_lora_stage2_saves_an_adapter_on_m_inter(make_config, tmp_path):
    out = tmp_path / "run"
    config = load_config(make_config(source="scene", training={"method": "lora", "lora_r": 4,
                                                               "stage2": {"epochs": 1, "learning_rate": 1e-3}}))
    run(config, out, log=lambda m: None)
    adapter = out / "models" / "rbft" / "seed0"
    base_ref = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base_ref == str(out / "models" / "stage1" / "seed0")
    model = load_model(adapter, dtype="float32")
    assert type(model).__name__ == "PeftModelForCausalLM"
    assert not (out / "models" / "stage1" / "seed0" / "adapter_config.json").exists()  # M_inter is merged


def test_unknown_target_module_stops_before_any_work(make_config, tmp_path):
    config = make_config(source="scene", training={"method": "lora", "target_modules": ["q_proj", "qkv_projection"]})
    proc = rbft("run", config, "--out", tmp_path / "run")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "qkv_projection" in stderr and "not found" in stderr
    assert not (tmp_path / "run" / "rationales.jsonl").exists() and not (tmp_path / "run" / "train").exists()


def test_a_run_whose_rationales_are_mostly_rejected_stops_before_stage_one(make_config, tmp_path):
    # 16 new tokens cannot hold the layout's six lines: every rationale lacks its reasoning and conclusion
    config = make_config(source="self", max_new_tokens=16, min_words=0)
    proc = rbft("run", config, "--out", tmp_path / "run")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    message = " ".join(stderr.split())
    assert "Stage I stopped: only 0 of 24 rationales passed the filter" in message
    assert "rationales.source: teacher" in message and "rationales.min_kept_share" in message
    records = lines(tmp_path / "run" / "rationales.jsonl")  # what was written is kept, with its reasons
    assert len(records) == 24 and all(r["rejected"].startswith("missing: ") for r in records)
    assert all("conclusion" in r["rejected"] for r in records)
    assert not (tmp_path / "run" / "models").exists() and not (tmp_path / "run" / "train").exists()
    # `on_too_few: skip` (the demo's): the same folder goes on without RB-FT, and its results say why
    config = make_config(source="self", max_new_tokens=16, min_words=0, on_too_few="skip",
                         extra={"label_budget": {"videos": [12]}})
    proc = rbft("run", config, "--out", tmp_path / "run")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "rationales: done with these settings; skipped" in stderr  # not written again
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["methods"]) == {"zero_shot", "probe", "direct_sft"} and not results["comparisons"]
    assert set(results["representations"]["models"]) == {"base", "direct_sft"}  # no M_inter, no M*
    assert results["refused"]["rbft"].startswith("Stage I stopped: only 0 of 24 rationales passed the filter")
    assert "RB-FT was not trained: Stage I stopped" in " ".join(stdout.split())
    assert not (tmp_path / "run" / "models" / "stage1").exists() and (tmp_path / "run" / "models" / "direct_sft").exists()
    assert [set(p["methods"]) for p in results["label_budget"]["points"]] == [{"direct_sft"}] * 2  # 12 and 24
    assert "RB-FT was not trained" in (tmp_path / "run" / "report.md").read_text()


def final_loss(folder) -> tuple[int, float]:
    rows = [r for r in lines(folder / "train" / "direct_sft" / "seed0" / "train_log.jsonl") if "loss" in r]
    return rows[-1]["step"], rows[-1]["loss"]


def test_sigkill_during_training_resumes_to_the_same_end(make_config, tmp_path):
    config = make_config(training={"batch_size": 2, "save_steps": 3, "select_best": False,
                                   "stage2": {"epochs": 2, "learning_rate": 2e-4}})
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    first = rbft("run", config, "--out", killed, "--only", "direct_sft")
    kill_after(first, killed / "train" / "direct_sft" / "seed0" / "train_log.jsonl", 7)
    assert list((killed / "train" / "direct_sft" / "seed0" / "checkpoints").glob("checkpoint-*"))
    again = rbft("run", config, "--out", killed, "--only", "direct_sft")
    assert again.wait(timeout=300) == 0, again.communicate()[1]
    reference = rbft("run", config, "--out", whole, "--only", "direct_sft")
    assert reference.wait(timeout=300) == 0
    (step_a, loss_a), (step_b, loss_b) = final_loss(killed), final_loss(whole)
    assert step_a == step_b == 24
    assert abs(loss_a - loss_b) <= 1e-3 * abs(loss_b)  # the stated tolerance: 0.1% of the final loss
    a, b = weights(killed / "models" / "direct_sft" / "seed0"), weights(whole / "models" / "direct_sft" / "seed0")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_two_processes_train_together(make_config, tmp_path):
    config, out = make_config(training={"batch_size": 2}), tmp_path / "run"
    # accelerate's multi-process launcher; without a GPU the processes join over gloo on the CPU
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rbft",
                           "run", str(config), "--out", str(out), "--only", "direct_sft"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("direct_sft-seed0: training") == 1  # the main process speaks for both
    log = [r for r in lines(out / "train" / "direct_sft" / "seed0" / "train_log.jsonl") if "loss" in r]
    assert log[-1]["step"] == 2 * 6  # 24 videos over 2 processes x batch 2, 2 epochs
    # each process scored its half of the 6 val videos after each epoch; the main one wrote the shared score
    scored = [r for r in lines(out / "train" / "direct_sft" / "seed0" / "train_log.jsonl") if "val_score" in r]
    assert [r["epoch"] for r in scored] == [1.0, 2.0] and all(0 <= r["val_score"] <= 1 for r in scored)
    assert json.loads((out / "train" / "direct_sft" / "seed0" / "best.json").read_text())["score"] == max(
        r["val_score"] for r in scored)
    assert differs(weights(SHIPPED_MODEL), weights(out / "models" / "direct_sft" / "seed0"))



def test_the_process_group_waits_as_long_as_the_config_says(make_config, tmp_path):
    # the others wait while the main process alone checks the data, scores and reports: NCCL's 10 minutes are too few
    config = make_config(training={"process_timeout_s": 4321})
    script = tmp_path / "go.py"
    script.write_text("import sys, torch, torch.distributed as dist\nfrom pathlib import Path\n"
                      "from rbft.config import load_config\nfrom rbft.pipeline import run\n"
                      "run(load_config(sys.argv[1]), Path(sys.argv[2]), only='check', log=lambda m: None)\n"
                      "group = dist.distributed_c10d._get_default_group()\n"
                      "seconds = group._get_backend(torch.device('cpu')).options._timeout.total_seconds()\n"
                      "Path(sys.argv[2], f'timeout-{dist.get_rank()}').write_text(str(seconds))\n")
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script),
                           str(config), str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [(tmp_path / "run" / f"timeout-{rank}").read_text() for rank in (0, 1)] == ["4321.0", "4321.0"]


@pytest.mark.slow  # about a minute
def test_two_processes_run_the_whole_experiment_with_an_ablation(make_config, tmp_path):
    config = make_config(source="scene", training={"batch_size": 2},
                         extra={"ablations": {"fewer-videos": {"data": {"train_limit": 12}}}})
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rbft",
                           "run", str(config), "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test set, ") == 1  # one table, from the main process
    results = json.loads((out / "results.json").read_text())
    assert set(results["ablations"]) == {"fewer-videos"} and results["attention"]["focus_videos"] == 8
    assert (out / "report.html").exists()


def test_predict_refuses_a_model_that_is_not_an_rbft_classifier(world_dir):
    proc = rbft("predict", world_dir / "videos" / "clip_00000.mp4", "--model", SHIPPED_MODEL)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "rbft_task.json" in stderr and "models/rbft/seed0" in stderr
