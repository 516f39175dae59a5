"""`rbft data import` on small files written in each dataset's published format (never the datasets' own)."""

import csv
import io
import json
import subprocess
import sys

import pytest

from rbft.data.adapters import import_dataset
from rbft.errors import DataError

SMARTHOME_HEADER = ["Title", "Category", "Anomaly Tag", "Video Description", "Reasoning behind Normality/Anomalies"]
TAGS = ["Normal"] * 12 + ["Abnormal"] * 12 + ["Vague Abnormal"] * 6


def write_csv(path, header, rows, bom=True):
    """CSV as SmartHome-Bench publishes it: UTF-8 with a BOM, CRLF, no newline after the last row."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([header, *rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().rstrip("\r\n").encode("utf-8"))


@pytest.fixture
def smarthome(tmp_path):
    folder = tmp_path / "SmartHome-Bench-LLM" / "Videos"
    rows = [[f"smartbench_{i:04d}", "Security, Wildlife" if i == 1 else "Pet Monitoring" if i % 3 else "Security",
             tag, f" A camera shows scene {i}. ", f"Reason {i}."] for i, tag in enumerate(TAGS, start=1)]
    rows[4][3] = "He said \u201a\u00c4\u00fahello\u201a\u00c4\u00f9, calmly."  # UTF-8 curly quotes read as Mac Roman
    rows.append(["smartbench_0003", "Security", "Normal", "again", "again"])  # listed twice
    rows.append(["smartbench_0099", "Security", "Suspicious", "x", "y"])  # not a tag of the dataset
    write_csv(folder / "Video_Annotation.csv", SMARTHOME_HEADER, rows)
    urls = [[f"smartbench_{i:04d}", "privacy url" if i > 25 else f"https://www.youtube.com/watch?v=v{i}"]
            for i in range(1, 31)]
    write_csv(folder / "Video_url.csv", ["Title", "URL"], urls)
    write_csv(folder / "Trim_Videos" / "Trim_video_label.csv", ["No.", "Title", "Time"],
              [[1, "smartbench_0002", 20], [2, "smartbench_0005", -3]], bom=False)
    return tmp_path / "SmartHome-Bench-LLM"


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smarthome_bench_from_its_folder(smarthome, tmp_path):
    summary = import_dataset("smarthome-bench", smarthome, tmp_path / "out" / "m.jsonl")
    assert summary["records"] == 30
    assert summary["labels"] == {"normal": 12, "abnormal": 12, "vague": 6}
    assert summary["categories"] == {"Security": 11, "Wildlife": 1, "Pet Monitoring": 19}  # "A, B" counts both
    assert [(s["id"], s["reason"]) for s in summary["skipped"]] == [
        ("smartbench_0003", "video listed twice; the first row is kept"),
        ("smartbench_0099", "unknown anomaly tag 'Suspicious'")]
    rows = lines(tmp_path / "out" / "m.jsonl")
    first = rows[0]
    assert first["video"] == "videos/smartbench_0001.mp4" and summary["videos_missing"] == 30
    assert first["meta"]["categories"] == ["Security", "Wildlife"]
    assert first["meta"]["description"] == "A camera shows scene 1." and first["meta"]["reasoning"] == "Reason 1."
    assert rows[4]["meta"]["description"] == "He said \u201chello\u201d, calmly."  # mojibake undone
    assert first["meta"]["url"].endswith("v1") and rows[-1]["meta"] == {**rows[-1]["meta"], "url": None, "private": True}
    assert rows[1]["meta"]["trim_s"] == 20 and rows[4]["meta"]["trim_s"] == -3 and "trim_s" not in first["meta"]
    # no published splits: a stratified split, the same for the same seed
    for label, n in (("normal", 12), ("abnormal", 12), ("vague", 6)):
        got = [r["split"] for r in rows if r["label"] == label]
        assert got.count("test") == round(n * 0.2) and got.count("val") == round(n * 0.1)
    again = import_dataset("smarthome-bench", smarthome, tmp_path / "again.jsonl")
    assert again["splits"] == summary["splits"]
    assert [r["split"] for r in lines(tmp_path / "again.jsonl")] == [r["split"] for r in rows]


def test_smarthome_bench_binary_counts_vague_as_abnormal(smarthome, tmp_path):
    summary = import_dataset("smarthome-bench", smarthome / "Videos" / "Video_Annotation.csv",
                             tmp_path / "m.jsonl", binary=True)
    assert summary["labels"] == {"normal": 12, "abnormal": 18}
    assert {r["meta"]["anomaly_tag"] for r in lines(tmp_path / "m.jsonl") if r["label"] == "abnormal"} == {
        "Abnormal", "Vague Abnormal"}


def test_videos_are_found_by_id_in_any_container(smarthome, tmp_path):
    videos = tmp_path / "downloads"
    (videos / "sub").mkdir(parents=True)
    (videos / "smartbench_0001.mp4").write_bytes(b"x")
    (videos / "sub" / "smartbench_0002.mkv").write_bytes(b"x")
    summary = import_dataset("smarthome-bench", smarthome, tmp_path / "m.jsonl", videos=videos)
    rows = {r["id"]: r for r in lines(tmp_path / "m.jsonl")}
    assert summary["videos_missing"] == 28
    assert rows["smartbench_0001"]["video"] == "downloads/smartbench_0001.mp4"
    assert rows["smartbench_0002"]["video"] == "downloads/sub/smartbench_0002.mkv"
    assert rows["smartbench_0003"]["video"] == "downloads/smartbench_0003.mp4"  # where it is expected


MHC_HEADER = "Video_ID\tMajority_Voting\tLabel\tTarget_Victim\tComponent\tDuration"


def write_tsv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join([MHC_HEADER, *rows]) + "\r\n").encode("utf-8"))


@pytest.fixture
def multihateclip(tmp_path):
    root = tmp_path / "MultiHateClip"
    base = root / "English_data" / "annotation"
    train = [f"vidtrain{i:03d}\t{label}\t['{label}', '{label}']\t[]\t[]\t[]"
             for i, label in enumerate(["Normal"] * 8 + ["Offensive"] * 3 + ["Hateful"] * 2)]
    train.append("dupInTest01\tOffensive\t['Offensive', 'Offensive']\t['Woman']\t['Vision component']\t[(30, 39)]")
    train.append('quoted00001\tHateful\t[\'Hateful\', \'Hateful\']\t"[""Mama\'s Boy""]"\t[\'Audio\']\t[(1, 2), (5, 9)]')
    write_tsv(base / "train.tsv", train)
    write_tsv(base / "valid.tsv", ["vidvalid001\tNormal\t['Normal', 'Normal']\t[]\t[]\t[]",
                                   "vidvalid002\tUnsure\t['Normal']\t[]\t[]\t[]"])
    write_tsv(base / "test.tsv", ["dupInTest01\tOffensive\t['Offensive', 'Offensive']\t['Woman']\t[]\t[]",
                                  "vidtest0001\tHateful\t['Hateful', 'Counter Narrative']\t['Black']\t[]\t[]",
                                  "vidtest0002\tNormal\t['Offensive', 'Offensive']\t[]\t[]\t[]"])
    return root


def test_multihateclip_keeps_its_splits_and_names_what_it_drops(multihateclip, tmp_path):
    summary = import_dataset("multihateclip", multihateclip, tmp_path / "m.jsonl")
    assert summary["records"] == 18
    assert summary["splits"] == {"train": {"normal": 8, "offensive": 3, "hateful": 3}, "val": {"normal": 1},
                                 "test": {"offensive": 1, "hateful": 1, "normal": 1}}
    assert summary["notes"] == ["1 video(s) whose majority label no annotator gave (kept, as published): vidtest0002"]
    reasons = {s["id"]: s["reason"] for s in summary["skipped"]}
    assert reasons["dupInTest01"].startswith("video also in test") and "kept there only" in reasons["dupInTest01"]
    assert reasons["vidvalid002"] == "unknown majority label 'Unsure'"
    rows = {r["id"]: r for r in lines(tmp_path / "m.jsonl")}
    assert rows["dupInTest01"]["split"] == "test"  # the published test set stays whole
    quoted = rows["quoted00001"]["meta"]
    assert quoted["target_victim"] == ["Mama's Boy"] and quoted["duration"] == [[1, 2], [5, 9]]
    assert rows["vidtest0001"]["meta"]["annotators"] == ["Hateful", "Counter Narrative"]
    binary = import_dataset("multihateclip", multihateclip / "English_data" / "annotation", tmp_path / "b.jsonl",
                            binary=True)
    assert binary["labels"] == {"normal": 10, "hateful_or_offensive": 8}
    with pytest.raises(DataError, match="no MultiHateClip train/valid/test.tsv"):
        import_dataset("multihateclip", multihateclip, tmp_path / "c.jsonl", language="chinese")


def test_rbft_authors_files_give_their_split_and_their_rationales(tmp_path):
    folder = tmp_path / "authors"
    folder.mkdir()

    def item(i, label, reply, truth=None):
        return {"id": f"smartbench_{i:04d}-anomaly-detection", "video": f"/data/x/raw_video/smartbench_{i:04d}.mp4",
                "ground_truth": truth or label,
                "conversations": [{"from": "human", "value": "<video>\nClassify."}, {"from": "gpt", "value": reply}]}

    (folder / "sft_label.json").write_text(json.dumps([item(i, lab, lab) for i, lab in
                                                       enumerate(["abnormal", "normal", "abnormal", "normal"])]))
    # their test.json says abnormal in ground_truth on every row; the reply holds the label
    (folder / "test.json").write_text(json.dumps([item(10, "normal", "normal", truth="abnormal"),
                                                  item(11, "abnormal", "abnormal")]))
    reasons = [item(i, lab, f"The video shows a scene number {i} with a person walking.\n\nClassification: {lab}")
               for i, lab in enumerate(["abnormal", "normal", "abnormal", "normal"])]
    (folder / "reasoning_w_answer.json").write_text(json.dumps(reasons))
    summary = import_dataset("rbft-authors", folder, tmp_path / "m.jsonl")
    assert summary["splits"] == {"train": {"abnormal": 2, "normal": 2}, "val": {}, "test": {"normal": 1, "abnormal": 1}}
    assert summary["notes"] == ["test.json: `ground_truth` differs from the target reply on 1 rows; the label is the reply's"]
    rationales = lines(tmp_path / "m.rationales.jsonl")
    assert [r["id"] for r in rationales] == [f"smartbench_{i:04d}" for i in range(4)]
    assert rationales[0]["source"] == "rbft-authors" and rationales[0]["video"] == "videos/smartbench_0000.mp4"


def test_cli_prints_a_json_summary_and_refuses_unknown_formats(smarthome, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "rbft", "data", "import", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    result = run("smarthome-bench", smarthome, "--out", tmp_path / "m.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 30 and summary["labels"]["vague"] == 6 and len(summary["skipped"]) == 2
    bad = run("kinetics", smarthome, "--out", tmp_path / "k.jsonl")
    assert bad.returncode == 2 and "smarthome-bench, multihateclip, rbft-authors" in bad.stderr
    missing = run("multihateclip", tmp_path / "nowhere", "--out", tmp_path / "k.jsonl")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
