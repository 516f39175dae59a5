"""The run folder's stage keys: a run folder made by an earlier rbft is resumed, not redone."""

import hashlib
import json

import pytest

from rbft.config import ExperimentConfig
from rbft.modeling import SHIPPED_MODEL
from rbft.runs import attention_key, eval_key, shipped_weights, stage_key

MANIFEST = [{"id": "a", "video": "videos/a.mp4", "label": "normal", "split": "train"},
            {"id": "b", "video": "videos/b.mp4", "label": "abnormal", "split": "train"},
            {"id": "c", "video": "videos/c.mp4", "label": "normal", "split": "test"}]
TASK = {"name": "home-security", "persona": "Smart Home Security Expert", "question": "Normal or abnormal?",
        "labels": {"normal": "routine", "abnormal": "not routine"}}
CONFIGS = {
    "defaults": {"name": "d", "task": TASK, "data": {"manifest": "m.jsonl"}, "model": {"name_or_path": "rbft-world-base"}},
    "demo": {"name": "demo", "task": TASK, "data": {"manifest": "m.jsonl", "num_frames": 8, "max_pixels": 16384},
             "model": {"name_or_path": "rbft-world-base", "dtype": "float32"},
             "rationales": {"source": "scene", "max_new_tokens": 96, "batch_size": 16},
             "training": {"method": "full", "batch_size": 8, "gradient_accumulation": 1, "balance": "sample",
                          "stage1": {"epochs": 2, "learning_rate": 2e-4},
                          "stage2": {"epochs": 4, "learning_rate": 1e-3, "min_steps": 60}},
             "eval": {"mode": "generate"}, "seeds": [0, 1]},
    "older": {"name": "o", "task": TASK, "data": {"manifest": "m.jsonl", "fps": 2, "train_limit": 1},
              "model": {"name_or_path": "rbft-world-base"},
              "training": {"balance": "none", "stage2": {"min_steps": 0}}, "seeds": [3]},
}
# Computed by rbft 8649b07, before the run-folder code moved into rbft.runs. Each key names the settings a
# finished stage was made with; if one changes, every run folder made before retrains that stage and all
# after it, so a change here must be on purpose (a recipe that changed), never a side effect.
# Re-pinned on purpose for issue 26: a label stage now keeps its calibration in the classifier's folder
# (`eval.calibration`), and eval writes each model's features and calibrated decisions.
# Re-pinned on purpose again: the label stages choose their epoch on val only when it holds
# `training.select_min_val` videos of every label.
EARLIER = {
    "defaults": {"check": "ea0f87c43de0ca2e", "rationales": "6eeb1d30ed740346", "stage1-seed0": "8d3bcace451571ef",
                 "stage2-seed0": "f504e8b189de08e0", "direct_sft-seed0": "e14a3d51d02a6424",
                 "eval-zero_shot": "c254ae91e504dc6e", "eval-rbft-seed0": "e8cfeaba9f3fa0ad",
                 "attention": "c196e63b40759aa8"},
    "demo": {"check": "1dd1ef47a95ff1d6", "rationales": "29a3c21e5895a9d2", "stage1-seed0": "d4b748d01197370e",
             "stage2-seed0": "efa248d93806fcbd", "direct_sft-seed0": "c8bd1ecbd88baabc",
             "eval-zero_shot": "e51aea098824b8fe", "eval-rbft-seed0": "d78cd50b65d496b7",
             "attention": "880024b8302c1449"},
    "older": {"check": "c12967e0724cff6d", "rationales": "4fb4dbe768da1fa8", "stage1-seed3": "2ec1e801c1bb531d",
              "stage2-seed3": "a5e42bd6b28f7c8e", "direct_sft-seed3": "a589ba84c22935fb",
              "eval-zero_shot": "bfb6e4aa6a3704b5", "eval-rbft-seed3": "5c03c10effae3403",
              "attention": "d0bcb2e6b1c375f2"},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_stage_keys_are_those_an_earlier_rbft_wrote(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the manifest's path is part of the key: the same relative path as then
    # as for any model but the shipped one, whose weights are in its keys (see the test below)
    monkeypatch.setattr("rbft.runs.shipped_weights", lambda config: ())
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MANIFEST))
    config = ExperimentConfig.model_validate(CONFIGS[name])
    seed = config.seeds[0]
    keys = {stage: stage_key(config, stage) for stage in ("check", "rationales")}
    keys |= {f"{stage}-seed{seed}": stage_key(config, stage, seed) for stage in ("stage1", "stage2", "direct_sft")}
    keys["eval-zero_shot"] = eval_key(config, keys["check"], ["c"])
    keys[f"eval-rbft-seed{seed}"] = eval_key(config, keys[f"stage2-seed{seed}"], ["c"])
    keys["attention"] = attention_key(config, ["c"])
    assert keys == EARLIER[name]
    # and a key does follow what its stage depends on
    changed = ExperimentConfig.model_validate({**CONFIGS[name], "seeds": [seed + 1]})
    assert stage_key(changed, "stage1", seed + 1) != keys[f"stage1-seed{seed}"]
    assert stage_key(changed, "check") == keys["check"]


def test_a_new_shipped_base_model_moves_every_key_but_the_data_checks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MANIFEST))
    config = ExperimentConfig.model_validate(CONFIGS["defaults"])
    assert shipped_weights(config) == (hashlib.sha256((SHIPPED_MODEL / "model.safetensors").read_bytes()).hexdigest(),)
    before = _keys(config)
    monkeypatch.setattr("rbft.runs.shipped_weights", lambda c: ("another model's weights",))
    after = _keys(config)
    assert {k for k in before if before[k] != after[k]} == set(before) - {"check"}
    # a model of one's own is named by its path or hub name, as before
    own = ExperimentConfig.model_validate({**CONFIGS["defaults"], "model": {"name_or_path": "Qwen/Qwen2.5-VL-7B"}})
    assert shipped_weights(own) == ()


def test_how_a_run_goes_changes_no_stage_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MANIFEST))
    config = ExperimentConfig.model_validate(CONFIGS["defaults"])
    running = ExperimentConfig.model_validate({**CONFIGS["defaults"], "training": {
        "process_timeout_s": 60, "checkpoints": "none", "dataloader_workers": 4, "report_to": []}})
    for stage in ("rationales", "stage1", "stage2", "direct_sft"):
        assert stage_key(running, stage, 0) == stage_key(config, stage, 0)
    trained = ExperimentConfig.model_validate({**CONFIGS["defaults"], "training": {"stage2": {"learning_rate": 1e-5}}})
    assert stage_key(trained, "stage2", 0) != stage_key(config, stage, 0)



# each stage's key against one setting changed at a time: (setting, what it changes, stages whose key must move);
# every other stage's key must stay (a setting that moves a key retrains that stage and everything after it)
CHANGES = [
    ({"data": {"num_frames": 4}}, {"check", "rationales", "stage1", "stage2", "direct_sft", "eval"}),
    ({"data": {"max_pixels": 9999}}, {"check", "rationales", "stage1", "stage2", "direct_sft", "eval"}),
    ({"data": {"decode_workers": 3}}, set()),
    ({"data": {"train_limit": 1}}, {"rationales", "stage1", "stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"model": {"dtype": "bfloat16"}}, {"rationales", "stage1", "stage2", "direct_sft", "eval"}),
    ({"model": {"attn_implementation": "eager"}}, {"rationales", "stage1", "stage2", "direct_sft", "eval"}),
    ({"task": {**TASK, "persona": "Another expert"}}, {"rationales", "stage1", "stage2", "direct_sft", "eval"}),
    ({"rationales": {"source": "scene"}}, {"rationales", "stage1", "stage2", "eval-rbft"}),
    ({"rationales": {"label_hint": False}}, {"rationales", "stage1", "stage2", "eval-rbft"}),
    ({"rationales": {"max_new_tokens": 17}}, {"rationales", "stage1", "stage2", "eval-rbft"}),
    ({"rationales": {"batch_size": 3, "concurrency": 9, "timeout_s": 5, "retries": 0}}, set()),
    ({"rationales": {"min_kept_share": 0.1, "on_too_few": "skip"}}, set()),  # they stop a run, change no rationale
    ({"training": {"stage1": {"learning_rate": 1e-5}}}, {"stage1", "stage2", "eval-rbft"}),
    ({"training": {"stage1": {"epochs": 1}}}, {"stage1", "stage2", "eval-rbft"}),
    ({"training": {"stage2": {"learning_rate": 1e-5}}}, {"stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"stage2": {"min_steps": 7}}}, {"stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"balance": "none"}}, {"stage1", "stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"select_min_val": 0}}, {"stage1", "stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"method": "full"}}, {"stage1", "stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"lora_r": 4}}, {"stage1", "stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"batch_size": 2}}, {"stage1", "stage2", "direct_sft", "eval-rbft", "eval-direct"}),
    ({"training": {"report_to": [], "process_timeout_s": 60, "checkpoints": "none", "dataloader_workers": 2}}, set()),
    ({"eval": {"mode": "generate"}}, {"eval"}),
    ({"eval": {"batch_size": 2}}, set()),
]


def _keys(config: ExperimentConfig) -> dict[str, str]:
    keys = {stage: stage_key(config, stage) for stage in ("check", "rationales")}
    keys |= {stage: stage_key(config, stage, 0) for stage in ("stage1", "stage2", "direct_sft")}
    keys |= {f"eval-{m}": eval_key(config, keys[s], ["c"]) for m, s in (("rbft", "stage2"), ("direct", "direct_sft"))}
    keys["eval-zero_shot"] = eval_key(config, keys["check"], ["c"])
    return keys


@pytest.mark.parametrize("change, moves", CHANGES, ids=[json.dumps(c)[:60] for c, _ in CHANGES])
def test_a_key_moves_with_what_its_stage_depends_on_and_with_nothing_else(change, moves, tmp_path, monkeypatch):
    from rbft.config import _merge

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MANIFEST))
    before = _keys(ExperimentConfig.model_validate(CONFIGS["defaults"]))
    after = _keys(ExperimentConfig.model_validate(_merge(CONFIGS["defaults"], change)))
    expected = {k for k in before if k in moves or k.split("-")[0] in moves}  # "eval": every method's
    assert {k for k in before if before[k] != after[k]} == expected
