"""`rbft export`: the conversations rbft trains on, in LLaMA-Factory's and ShareGPT's layouts."""

import json

from rbft.config import load_config
from rbft.prompts import label_prompt, rationale_prompt, system_prompt

from .conftest import rbft


def test_export_labels_for_llamafactory_and_rationales_for_sharegpt(make_config, tmp_path):
    config_path = make_config()
    config = load_config(config_path)
    manifest = config.data.manifest
    out = tmp_path / "lf" / "train.json"
    proc = rbft("export", manifest, "--format", "llamafactory", "--config", config_path, "--out", out)
    assert proc.wait(timeout=60) == 0, proc.communicate()
    rows = json.loads(out.read_text())
    train = [json.loads(line) for line in manifest.read_text().splitlines() if '"train"' in line]
    assert len(rows) == len(train)
    first = rows[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == system_prompt(config.task)
    assert first["messages"][1]["content"] == "<video>" + label_prompt(config.task)
    assert first["messages"][2]["content"] == f"<{train[0]['label']}>"
    assert first["videos"][0].endswith(train[0]["video"]) and first["videos"][0].startswith("/")
    info = json.loads((out.parent / "dataset_info.json").read_text())
    assert info["train"]["file_name"] == "train.json" and info["train"]["formatting"] == "sharegpt"

    rationales = tmp_path / "rationales.jsonl"
    rationales.write_text(json.dumps({"id": train[0]["id"], "rationale": "Subjects: a cat.", "rejected": None}) + "\n"
                          + json.dumps({"id": train[1]["id"], "rationale": "x", "rejected": "too short"}) + "\n")
    out = tmp_path / "sg.json"
    proc = rbft("export", manifest, "--format", "sharegpt", "--config", config_path, "--out", out,
                "--rationales", rationales)
    assert proc.wait(timeout=60) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1  # the rejected rationale is not exported
    assert rows[0]["conversations"] == [{"from": "human", "value": "<video>" + rationale_prompt(config.task)},
                                        {"from": "gpt", "value": "Subjects: a cat."}]
    bad = rbft("export", manifest, "--format", "alpaca", "--config", config_path, "--out", out)
    assert bad.wait(timeout=60) == 2 and "llamafactory" in bad.communicate()[1]
