"""Experiment configs: typed, and every mistake named by key and file."""

import textwrap

import pytest

from rbft.config import load_config
from rbft.errors import ConfigError

GOOD = """
name: home-security-demo
task:
  name: home-security
  persona: Smart Home Security Expert
  question: Is the activity in this video normal, abnormal or vague?
  labels:
    normal: routine activity of residents, visitors, pets
    abnormal: intrusion, theft, wildlife at the house, a fall, danger to a child
    vague: cannot be judged from the video alone
data:
  manifest: data/manifest.jsonl
  num_frames: 8
model:
  name_or_path: Qwen/Qwen2.5-VL-7B-Instruct
training:
  method: lora
  stage1: {epochs: 2, learning_rate: 0.0002}
seeds: [0, 1, 2]
"""


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_a_good_config_loads_typed(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert list(config.task.labels) == ["normal", "abnormal", "vague"]
    assert config.data.manifest == tmp_path / "data" / "manifest.jsonl"
    assert config.training.stage1.epochs == 2.0 and config.training.stage2.epochs == 3.0
    assert config.seeds == [0, 1, 2]
    assert config.model.trust_remote_code is False
    assert config.data.sampling().num_frames == 8


def test_unknown_key_is_named(tmp_path):
    message = error_of(tmp_path, GOOD.replace("  num_frames: 8", "  num_frame: 8"))
    assert "data.num_frame: unknown key" in message


def test_bad_values_are_named(tmp_path):
    assert "data.num_frames" in error_of(tmp_path, GOOD.replace("num_frames: 8", "num_frames: 0"))
    assert "training.method" in error_of(tmp_path, GOOD.replace("method: lora", "method: qlora-ish"))
    one_label = GOOD.replace("    abnormal: intrusion, theft, wildlife at the house, a fall, danger to a child\n", "")
    one_label = one_label.replace("    vague: cannot be judged from the video alone\n", "")
    assert "task.labels" in error_of(tmp_path, one_label)
    assert "model: required key is missing" in error_of(tmp_path, GOOD.split("model:")[0])


def test_fps_or_num_frames_not_both(tmp_path):
    assert "either num_frames or fps" in error_of(tmp_path, GOOD.replace("num_frames: 8", "num_frames: 8\n  fps: 2"))
    config = load_config(write(tmp_path, GOOD.replace("num_frames: 8", "fps: 2")))
    assert config.data.sampling().fps == 2 and config.data.sampling().num_frames is None


def test_broken_yaml_gives_the_line(tmp_path):
    assert "line 3" in error_of(tmp_path, "name: x\ntask:\n  labels: [a, b\n")
    assert "expected a mapping" in error_of(tmp_path, "- just\n- a list\n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_ablations_merge_into_the_config_and_bad_ones_are_named(tmp_path):
    config = load_config(write(tmp_path, GOOD + textwrap.dedent("""
        ablations:
          scene: {rationales: {source: scene}, seeds: [0]}
          full-4: {training: {method: full, stage1: {epochs: 4}}}
        """)))
    full = config.ablation("full-4")
    assert full.training.method == "full" and full.training.stage1.epochs == 4
    assert full.training.stage1.learning_rate == 0.0002  # what the ablation does not name stays
    assert config.ablation("scene").seeds == [0] and config.ablation("scene").data == config.data
    assert "task cannot vary" in error_of(tmp_path, GOOD + "ablations: {t: {task: {name: x}}}\n")
    assert "data.manifest cannot vary" in error_of(tmp_path, GOOD + "ablations: {m: {data: {manifest: o.jsonl}}}\n")
    message = error_of(tmp_path, GOOD + "ablations: {q: {training: {method: qlora}}}\n")
    assert "ablation 'q'" in message and "training.method" in message


def test_rationale_file_resolves_against_the_config_and_is_required_for_source_file(tmp_path):
    config = load_config(write(tmp_path, GOOD + "rationales: {source: file, file: r/authors.jsonl}\n"))
    assert config.rationales.file == (tmp_path / "r" / "authors.jsonl").resolve()
    assert "source 'file' needs `file`" in error_of(tmp_path, GOOD + "rationales: {source: file}\n")


def test_label_training_options_and_their_unknown_values_are_named(tmp_path):
    config = load_config(write(tmp_path, GOOD.replace("  method: lora", "  method: lora\n  balance: sample")
                               .replace("learning_rate: 0.0002}", "learning_rate: 0.0002, min_steps: 50}")))
    assert config.training.balance == "sample" and config.training.stage1.min_steps == 50
    assert config.training.stage2.min_steps == 100  # not named: the label stage's floor for tiny sets
    message = error_of(tmp_path, GOOD.replace("  method: lora", "  method: lora\n  balance: oversample"))
    assert "training.balance" in message and "oversample" in message
    assert "training.stage1.min_steps" in error_of(tmp_path, GOOD.replace("0.0002}", "0.0002, min_steps: -1}"))


def test_the_label_budget_becomes_one_run_per_number_of_videos(tmp_path):
    config = load_config(write(tmp_path, GOOD + "label_budget: {videos: [40, 20], seeds: [0, 1]}\n"))
    assert list(config.budget_points()) == ["labels-20", "labels-40"]
    point = config.ablation("labels-20")
    assert point.data.train_limit == 20 and point.seeds == [0, 1] and point.label_budget.videos == []
    assert load_config(write(tmp_path, GOOD + "label_budget: {videos: [20]}\n")).ablation("labels-20").seeds == [0, 1, 2]
    assert "label_budget.videos" in error_of(tmp_path, GOOD + "label_budget: {videos: [20, 20]}\n")
    assert "label_budget.vidoes: unknown key" in error_of(tmp_path, GOOD + "label_budget: {vidoes: [20]}\n")
    assert "are the label budget's" in error_of(tmp_path, GOOD + "ablations: {labels-9: {seeds: [0]}}\n")


def test_calibration_is_prior_by_default_and_an_unknown_one_is_named(tmp_path):
    assert load_config(write(tmp_path, GOOD)).eval.calibration == "prior"
    message = error_of(tmp_path, GOOD + "eval:\n  calibration: platt\n")
    assert "eval.calibration" in message and "'none' or 'prior'" in message and "platt" in message
    assert load_config(write(tmp_path, GOOD + "eval:\n  calibration: none\n")).eval.calibration == "none"
