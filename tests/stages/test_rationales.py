"""The rationales stage through `rbft run CONFIG --only rationales`, killed and run again."""

import json
import signal
import subprocess
import sys
import time

import pytest

from rbft.config import load_config
from rbft.pipeline import run

from .conftest import rbft
from .faults import FaultProxy

PROVENANCE = ("model", "prompt_sha256", "source", "generation", "created_at")


def train_ids(config_path) -> list[str]:
    manifest = load_config(config_path).data.manifest
    return [row["id"] for row in map(json.loads, manifest.read_text().splitlines()) if row["split"] == "train"]


def lines(path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def kill_after(proc: subprocess.Popen, path, records: int, limit_s: float = 120) -> None:
    """SIGKILL `proc` once `path` holds `records` lines; fail if it ends first."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= records:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        assert proc.poll() is None, f"the run ended before it was killed: {proc.communicate()}"
        time.sleep(0.02)
    pytest.fail("no records appeared")


def check_complete(out, ids: list[str]) -> list[dict]:
    rows = lines(out / "rationales.jsonl")
    usable = [i for i in ids if i != "broken"]
    assert [r["id"] for r in rows] == usable  # one each, none lost, none duplicated, in manifest order
    for r in rows:
        assert all(r[key] for key in PROVENANCE), r
        assert r["source"] == "self" and r["model"] == "rbft-world-base" and len(r["prompt_sha256"]) == 64
    errors = lines(out / "errors.jsonl")
    assert [(e["id"], e["kind"]) for e in errors] == [("broken", "truncated")]
    summary = json.loads((out / "rationales_summary.json").read_text())
    assert summary["records"] == len(usable) == summary["kept"] + summary["rejected"]
    return rows


def test_sigkill_then_rerun_ends_with_one_record_per_usable_video(make_config, tmp_path):
    config, out = make_config(), tmp_path / "run"
    first = rbft("run", config, "--out", out, "--only", "rationales")
    kill_after(first, out / "rationales.jsonl", 6)
    before = lines(out / "rationales.jsonl")
    with open(out / "rationales.jsonl", "a") as f:
        f.write('{"id": "clip_0')  # as if the kill had landed in the middle of a write
    second = rbft("run", config, "--out", out, "--only", "rationales")
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert f"{len(before)} of 24 already written" in stderr and "torn" in stderr
    rows = check_complete(out, train_ids(config))
    assert [r for r in rows if r["id"] in {b["id"] for b in before}] == before  # written before the kill: kept as is
    assert all(r["label_hint"] is True and r["generation"]["backend"] == "transformers" for r in rows)
    third = rbft("run", config, "--out", out, "--only", "rationales")
    assert "done with these settings; skipped" in third.communicate(timeout=120)[1]


def test_http_backend_survives_kill_and_server_faults(make_config, tmp_path, server):
    """A flaky server: every 4th request fails once; the first two videos' requests fail until it heals."""
    doomed: set[str] = set()
    healed = False

    def plan(n, body):
        first_frame = body["messages"][-1]["content"][0]["image_url"]["url"]
        if not healed and (first_frame in doomed or len(doomed) < 2):
            doomed.add(first_frame)
            return "500"
        return ("500", "malformed", "timeout")[n % 3] if n % 4 == 3 else None

    proxy = FaultProxy(server, plan, slow_s=6.0)
    try:
        config = make_config(endpoint=proxy.url, concurrency=2, retries=2, timeout_s=5.0)  # loaded CI machines are slow
        out = tmp_path / "run"
        first = rbft("run", config, "--out", out, "--only", "rationales")
        kill_after(first, out / "rationales.jsonl", 5)
        second = rbft("run", config, "--out", out, "--only", "rationales")
        stderr = second.communicate(timeout=300)[1]
        assert second.returncode == 0 and "2 generation(s) failed" in stderr, stderr
        rows = check_complete(out, train_ids(config))
        failed = [r for r in rows if (r["rejected"] or "").startswith("generation failed")]
        assert len(failed) == 2 and all("HTTP 500" in r["rejected"] and "3 attempt(s)" in r["rejected"] for r in failed)
        assert all(r["rationale"] is None for r in failed)
        healed = True
        third = rbft("run", config, "--out", out, "--only", "rationales")
        stderr = third.communicate(timeout=300)[1]
        assert third.returncode == 0 and f"{len(rows) - 2} of 24 already written, 2 to write" in stderr
        rows = check_complete(out, train_ids(config))
        assert not [r for r in rows if (r["rejected"] or "").startswith("generation failed")]
        assert all(r["generation"]["backend"] == "http" for r in rows)
    finally:
        proxy.close()


def test_scene_source_writes_the_ground_truth_and_the_filter_keeps_its_verdicts(make_config, tmp_path):
    config = load_config(make_config(source="scene", min_words=45))
    facts = run(config, tmp_path / "run", only="rationales", log=lambda m: None)["rationales"]
    rows = lines(tmp_path / "run" / "rationales.jsonl")
    assert len(rows) == 24 and all(r["source"] == "scene" and r["model"] == "scene-record" for r in rows)
    for r in rows:
        assert r["rationale"].startswith("Subjects: ") and r["rationale"].endswith(f"Conclusion: <{r['label']}>")
    short = [r for r in rows if r["rejected"]]
    assert short and all(r["rejected"].startswith("too short") for r in short)  # kept in the file, with why
    assert facts["rejected_by_reason"] == {"too short": len(short)} and facts["kept"] == 24 - len(short)
    assert json.loads((tmp_path / "run" / "rationales_summary.json").read_text()) == facts


def test_file_source_reads_rationales_written_elsewhere(make_config, tmp_path):
    ids = [i for i in train_ids(make_config()) if i != "broken"]
    manifest = {r["id"]: r for r in map(json.loads, (tmp_path / "home-security.jsonl").read_text().splitlines())}
    given = tmp_path / "authors.rationales.jsonl"
    rows = [{"id": i, "rationale": f"A person walks by the porch and nothing else happens in clip {i}.\n"
                                   f"Classification: {'abnormal' if n == 0 else manifest[i]['label']}",
             "model": "rbft-authors"} for n, i in enumerate(ids[:-1])]  # the last video has none
    given.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_config(make_config(source="file", file=str(given)))
    facts = run(config, tmp_path / "run", only="rationales", log=lambda m: None)["rationales"]
    written = {r["id"]: r for r in lines(tmp_path / "run" / "rationales.jsonl")}
    assert list(written) == ids and all(r["source"] == "file" for r in written.values())
    assert written[ids[1]]["model"] == "rbft-authors" and written[ids[1]]["rejected"] is None  # no layout asked
    assert written[ids[-1]]["rejected"] == "no rationale for this video in authors.rationales.jsonl"
    if manifest[ids[0]]["label"] != "abnormal":
        assert written[ids[0]]["rejected"].startswith("contradicts the label")
    assert facts["records"] == len(ids)


def test_label_free_ablation_and_a_changed_config_keeps_the_old_file(make_config, tmp_path):
    out = tmp_path / "run"
    hinted = run(load_config(make_config(source="scene")), out, only="rationales", log=lambda m: None)
    assert hinted["rationales"]["records"] == 24
    first = lines(out / "rationales.jsonl")
    messages = []
    run(load_config(make_config(source="scene", label_hint=False)), out, only="rationales", log=messages.append)
    kept_aside = [p for p in out.glob("rationales.*.jsonl")]
    assert len(kept_aside) == 1 and lines(kept_aside[0]) == first
    assert any("settings changed" in m for m in messages)


def test_self_rationales_prompts_differ_with_and_without_the_label(make_config, tmp_path):
    from rbft.prompts import rationale_prompt, sha256

    config = load_config(make_config(label_hint=False, max_new_tokens=24))
    run(config, tmp_path / "run", only="rationales", log=lambda m: None)
    rows = lines(tmp_path / "run" / "rationales.jsonl")
    assert {r["prompt_sha256"] for r in rows} == {sha256(rationale_prompt(config.task))}
    assert all(r["label_hint"] is False for r in rows)


def test_two_processes_share_the_work_and_merge(make_config, tmp_path):
    config, out = make_config(source="self", max_new_tokens=24), tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rbft",
                           "run", str(config), "--out", str(out), "--only", "rationales"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "over 2 processes" in proc.stderr
    assert not list(out.glob("rationales.part*.jsonl"))
    check_complete(out, train_ids(config))


def test_a_teacher_writes_the_rationales_and_is_named_in_them(make_config, tmp_path):
    import torch

    from rbft.data.cache import FrameCache
    from rbft.data.manifest import load_manifest
    from rbft.generation import generate
    from rbft.modeling import load_for_videos, load_model, load_processor
    from rbft.prompts import rationale_examples

    # another model than the base: the shipped one with every weight moved, so it writes other text
    teacher = tmp_path / "teacher"
    other = load_model("rbft-world-base", dtype="float32")
    torch.manual_seed(1)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(torch.randn_like(param) * param.std().nan_to_num(0.02) * 0.5)
    other.save_pretrained(teacher)
    load_processor("rbft-world-base").save_pretrained(teacher)
    config = load_config(make_config(source="teacher", teacher=str(teacher), max_new_tokens=24))
    run(config, tmp_path / "run", only="rationales", log=lambda m: None)
    rows = lines(tmp_path / "run" / "rationales.jsonl")
    assert len(rows) == 24 and all(r["source"] == "teacher" and r["model"] == str(teacher) for r in rows)
    # the file holds the teacher's replies, not the base model's
    cache, sampling = FrameCache(), config.data.sampling()
    videos = [v for v in load_manifest(config.data.manifest, config.task.labels) if v.id in {r["id"] for r in rows}][:4]
    examples = rationale_examples(config.task, videos, config.rationales.label_hint)
    written = {r["id"]: r["rationale"] for r in rows}
    replies = {}
    for name in (teacher, "rbft-world-base"):
        model, collator = load_for_videos(name, lambda path: cache.load(path, sampling), dtype="float32")
        replies[str(name)] = generate(model, collator, examples, max_new_tokens=24, batch_size=2)
    assert [written[v.id] for v in videos] == replies[str(teacher)]
    assert replies[str(teacher)] != replies["rbft-world-base"]


def test_teacher_source_without_a_teacher_is_a_config_error(make_config):
    from rbft.errors import ConfigError

    with pytest.raises(ConfigError, match="rationales: Value error, source 'teacher' needs `teacher`"):
        load_config(make_config(source="teacher"))
