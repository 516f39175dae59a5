import json

from rbft.data.rationales import FAILED, RationaleStore, compact, conclusion, merge, rejection, summary

LABELS = ["normal", "abnormal", "vague"]
GOOD = ("Subjects: a bear.\nAttributes: the bear is large and brown.\nActions: the bear knocks over a trash can.\n"
        "Scene: in the driveway at night.\nReasoning: a wild animal at the house is a danger.\nConclusion: <abnormal>")


def rec(i, **kw):
    return {"id": i, "rationale": GOOD, "rejected": None, **kw}


def test_store_appends_and_reads_back(tmp_path):
    store = RationaleStore(tmp_path / "r.jsonl")
    store.append(rec("a"))
    store.append(rec("b"))
    again = RationaleStore(tmp_path / "r.jsonl")
    assert list(again.records) == ["a", "b"] and again.torn == 0


def test_torn_last_line_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RationaleStore(path)
    store.append(rec("a"))
    with open(path, "a") as f:
        f.write('{"id": "b", "rationale": "Subj')  # what a kill in the middle of a write leaves
    again = RationaleStore(path)
    assert list(again.records) == ["a"] and again.torn == 1
    again.append(rec("c"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "c"]


def test_failures_are_not_done_and_compact_keeps_the_last_record(tmp_path):
    store = RationaleStore(tmp_path / "r.jsonl")
    store.append(rec("a", rationale=None, rejected=f"{FAILED}: HTTP 500"))
    store.append(rec("b"))
    assert store.done() == {"b"}
    store.append(rec("a"))  # the retry succeeded
    compact(store, ["b", "a"])
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["b", "a"] and rows[1]["rejected"] is None


def test_merge_appends_parts_and_removes_them(tmp_path):
    main = RationaleStore(tmp_path / "r.jsonl")
    part = RationaleStore(tmp_path / "r.part1.jsonl")
    part.append(rec("x"))
    merge(main, [part.path])
    assert not part.path.exists() and list(RationaleStore(main.path).records) == ["x"]


def test_filter_reasons():
    assert rejection(GOOD, "abnormal", LABELS) is None
    assert rejection("", "normal", LABELS) == "empty"
    assert rejection(None, "normal", LABELS) == "empty"
    assert rejection("Subjects: a cat.", "normal", LABELS).startswith("too short")
    loop = "Subjects: a cat. Attributes: black. Actions: the cat is playing " * 6
    assert rejection(loop, "normal", LABELS) == "degenerate repetition"
    no_scene = GOOD.replace("Scene: in the driveway at night.\n", "")
    assert rejection(no_scene, "abnormal", LABELS) == "missing dimensions: scenes"
    assert rejection(GOOD, "normal", LABELS).startswith("contradicts the label (concludes abnormal")
    # no conclusion at all is not a contradiction
    assert rejection(GOOD.rsplit("\n", 1)[0], "normal", LABELS) is None


def test_conclusion_reads_the_last_verdict_and_whole_words():
    assert conclusion("Conclusion: normal", LABELS) == "normal"
    assert conclusion("Conclusion: <abnormal>", LABELS) == "abnormal"
    assert conclusion("**Classification:** Abnormal.", LABELS) == "abnormal"
    assert conclusion("Conclusion: normal\n...\nConclusion: vague", LABELS) == "vague"
    assert conclusion("It looks normal.", LABELS) is None
    # an empty verdict line is no verdict: the next line is not read as its text
    assert conclusion("Conclusion:\nThe subjects look normal.", LABELS) is None
    # a label with an underscore, written with a space or a hyphen, as teachers write them
    animals = ["no_animal", "pet", "large_wildlife"]
    assert conclusion("Conclusion: large wildlife (a bear)", animals) == "large_wildlife"
    assert conclusion("**Answer:** <No-Animal>", animals) == "no_animal"
    assert conclusion("Conclusion: a wildlife documentary", animals) is None


def test_summary_counts_lengths_and_reasons():
    rows = [rec("a", label="abnormal"), rec("b", rejected="too short (3 words, fewer than 12)"),
            rec("c", rejected="too short (5 words, fewer than 12)"), rec("d", rejected="empty")]
    facts = summary(rows)
    assert facts["records"] == 4 and facts["kept"] == 1 and facts["rejected"] == 3
    assert facts["rejected_by_reason"] == {"too short": 2, "empty": 1}
    assert facts["words"]["median"] == len(GOOD.split()) and facts["by_label"] == {"abnormal": 1}
