"""The command line, run as a user runs it: a real subprocess on real files."""

import json
import subprocess
import sys

import pytest
import torch

from rbft.data.samples import write_sample_set, write_video

EXPECTED_KINDS = {
    "cut_short": "truncated", "empty": "empty", "text_named_mp4": "not_a_video",
    "audio_only": "no_video_stream", "missing": "missing",
}


def rbft(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rbft", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory):
    return write_sample_set(tmp_path_factory.mktemp("samples"))


def test_version_and_help():
    version = rbft("--version")
    assert version.returncode == 0 and version.stdout.startswith("rbft ")
    helptext = rbft("--help").stdout
    assert "data" in helptext and "demo" in helptext


def test_data_check_json_lists_every_video(sample_set, tmp_path):
    result = rbft("data", "check", sample_set, "--json", "--errors", tmp_path / "errors.jsonl")
    assert result.returncode == 1, result.stderr
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert len(rows) == sum(1 for _ in open(sample_set))
    for row in rows.values():
        assert set(row) == {"id", "video", "ok", "error_kind", "message", "width", "height", "duration_s", "frames_sampled"}
        if row["id"] in EXPECTED_KINDS:
            assert not row["ok"] and row["error_kind"] == EXPECTED_KINDS[row["id"]] and row["message"]
        else:
            assert row["ok"] and row["frames_sampled"] == 8 and row["error_kind"] is None, row
            upright = (64, 96) if row["id"] == "phone_portrait" else (96, 64)  # stored 96x64, turned 90 degrees
            assert (row["width"], row["height"]) == upright, row
    assert rows["h264_mp4"]["duration_s"] == pytest.approx(2.0, abs=0.01)
    assert rows["variable_rate"]["duration_s"] == pytest.approx(1.6 + 0.125, abs=0.06)
    errors = [json.loads(line) for line in open(tmp_path / "errors.jsonl")]
    assert {e["id"]: e["kind"] for e in errors} == EXPECTED_KINDS
    assert all(e["message"] and e["video"] for e in errors)


def test_data_check_human_summary(sample_set):
    result = rbft("data", "check", sample_set, "--no-cache", "--workers", "1")
    assert result.returncode == 1
    total = sum(1 for _ in open(sample_set))
    assert f"{total - len(EXPECTED_KINDS)} of {total} videos usable" in result.stdout.replace("\n", " ")
    assert "truncated" in result.stdout


def test_all_usable_exits_0_and_a_folder_works(tmp_path):
    write_video(tmp_path / "a.mp4")
    write_video(tmp_path / "b c.webm", codec="vp9")
    result = rbft("data", "check", tmp_path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(r["id"] for r in json.loads(result.stdout)) == ["a.mp4", "b c.webm"]


def test_unusable_manifest_exits_2(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"video": "a.mp4", "split": "dev"}\n{oops\n')
    result = rbft("data", "check", bad, "--json")
    assert result.returncode == 2 and result.stdout == ""
    assert "line 1" in result.stderr and "line 2" in result.stderr


def test_labels_checked_against_the_config_task(tmp_path):
    write_video(tmp_path / "a.mp4")
    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4", "label": "burglary"}\n')
    (tmp_path / "exp.yaml").write_text(
        "name: t\ntask: {name: t, persona: p, question: q, labels: {normal: n, abnormal: a}}\n"
        "data: {manifest: m.jsonl, num_frames: 4}\nmodel: {name_or_path: m}\n"
    )
    result = rbft("data", "check", tmp_path / "m.jsonl", "--config", tmp_path / "exp.yaml")
    assert result.returncode == 2 and "burglary" in result.stderr
    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4", "label": "normal"}\n')
    result = rbft("data", "check", tmp_path / "m.jsonl", "--config", tmp_path / "exp.yaml", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)[0]["frames_sampled"] == 4


@pytest.mark.slow  # about 1.5 minutes
def test_demo_quick_runs_the_whole_experiment(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rbft", "demo", "--quick", "--out", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "demo" / "run-quick"
    results = json.loads((run / "results.json").read_text())
    for name in ("zero-shot", "linear probe", "direct SFT", "RB-FT"):
        assert name in result.stdout
    # the shipped model writes rationales toward the label it is told, and the filter keeps most of them
    summary = json.loads((run / "rationales_summary.json").read_text())
    assert summary["records"] == 64 and summary["kept"] >= 32 and "refused" not in results
    assert list(results["methods"]) == ["zero_shot", "probe", "direct_sft", "rbft"]
    # 16 val clips, none abnormal: too few to choose the calibration on, so the decisions are the raw argmax,
    # and too few to choose an epoch on (its macro-F1 cannot see abnormal), so the label stages keep their last
    assert results["decisions"].startswith("raw") and "abnormal 0" in results["decisions"]
    assert "keeping the last epoch: too few val videos to choose an epoch on: abnormal 0" in " ".join(
        result.stderr.split())
    assert not list((run / "train").glob("*/seed0/best.json"))
    from rbft.metrics import collapsed

    assert not [w for w in collapsed(results) if not w.startswith("zero_shot")]  # both arms answer more than one label
    assert "what each model represents" in result.stdout and set(results["representations"]["models"]) == {
        "base", "direct_sft", "m_inter", "rbft"}
    assert "RB-FT minus direct SFT, macro_f1" in " ".join(result.stdout.split())
    assert "ablations" not in results  # the teacher arm is the full demo's
    assert (run / "report.html").stat().st_size > 10_000 and (run / "report.md").exists()
    assert sorted(p.name for p in (run / "attention").glob("*.png")) == [f"{v}.png" for v in results["attention"]["videos"]]
    assert "demo finished in" in result.stdout
    # run again: everything is done, nothing is redone
    again = rbft("demo", "--quick", "--out", tmp_path / "demo")
    assert again.returncode == 0 and "eval:" not in again.stderr and "training" not in again.stderr


def test_demo_write_config_gives_a_config_rbft_run_takes(tmp_path):
    result = rbft("demo", "--quick", "--write-config", tmp_path / "mine" / "exp.yaml")
    assert result.returncode == 0, result.stderr
    from rbft.config import load_config

    config = load_config(tmp_path / "mine" / "exp.yaml")
    assert config.model.name_or_path == "rbft-world-base" and config.task.name == "home-security"
    assert config.data.manifest == (tmp_path / "mine" / "world-quick" / "home-security.jsonl").resolve()
    assert config.data.manifest.read_text().count("\n") == 64 + 16 + 64
    check = rbft("data", "check", config.data.manifest, "--json")
    assert check.returncode == 0


def test_the_demo_runs_a_teacher_arm_and_the_study_adds_the_label_budget_to_the_same_run():
    from rbft.demo import FULL, QUICK, STUDY, demo_config

    full, study, quick = (demo_config("world/home-security.jsonl", size) for size in (FULL, STUDY, QUICK))
    # RB-FT on the world's ground-truth rationales, every other setting the demo's
    assert full["ablations"] == {"ground-truth-rationales": {"rationales": {"source": "scene"}}}
    assert full["rationales"]["source"] == "self" and "label_budget" not in full
    assert study["label_budget"] == {"videos": [20, 80]}
    assert {k: v for k, v in study.items() if k not in ("name", "label_budget")} == {
        k: v for k, v in full.items() if k != "name"}
    assert "ablations" not in quick and "label_budget" not in quick  # a first look: no teacher arm
    # when too few of the shipped model's rationales pass the filter, the demo runs the other arms and says why
    assert full["rationales"]["on_too_few"] == quick["rationales"]["on_too_few"] == "skip"
    assert rbft("demo", "--quick", "--study").returncode == 2


def test_world_generate_writes_a_dataset_that_passes_the_data_check(tmp_path):
    result = rbft("world", "generate", "--out", tmp_path / "w", "--train", 6, "--val", 2, "--test", 4, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert sum(info["labels"]["home-security"]["train"].values()) == 6
    assert sum(info["labels"]["wildlife-and-pets"]["test"].values()) == 4
    check = rbft("data", "check", tmp_path / "w" / "home-security.jsonl", "--json")
    assert check.returncode == 0, check.stdout
    assert all(row["ok"] and row["width"] == 128 for row in json.loads(check.stdout))


@pytest.mark.slow
def test_world_pretrain_makes_a_loadable_model(tmp_path):
    result = rbft("world", "pretrain", "--out", tmp_path / "base", "--work", tmp_path / "work", "--clips", 4,
                  "--epochs", 1, "--copy-steps", 3, "--copy-far-steps", 2, "--refresh-quizzes", 4)
    assert result.returncode == 0, result.stderr
    assert "base model written" in result.stdout
    made = json.loads((tmp_path / "base" / "pretrain.json").read_text())
    assert made["recipe"]["copy_steps"] == 3 and made["recipe"]["refresh_quizzes"] == 4
    assert (tmp_path / "base" / "model.safetensors").exists() and (tmp_path / "base" / "README.md").exists()
    # it loads as any Hugging Face model folder, was trained (not the recipe's random start), and generates
    from transformers import AutoConfig

    from rbft.data.collate import Example
    from rbft.generation import Decoding, generate_batches
    from rbft.modeling import load_for_videos, new_model
    from rbft.world.generate import make_clip

    clip = make_clip(1, 0, "x")[1][::3][:4]
    model, collator = load_for_videos(tmp_path / "base", lambda _: clip, dtype="float32")
    start = new_model(AutoConfig.from_pretrained(tmp_path / "base"), seed=0).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())
    [(_, reply, usage)] = next(generate_batches(model, collator, [Example("a", "v", "Describe the video.")],
                                                Decoding(max_new_tokens=12), usage=True))
    # (a model of a few steps may end at once or write only spaces, one run in three or so: what it writes is the
    # shipped model's tests' business, not this one's)
    assert isinstance(reply, str) and usage.prompt_tokens > 0 and 1 <= usage.completion_tokens <= 12
