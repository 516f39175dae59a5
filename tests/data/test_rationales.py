import json

from rbft.data.rationales import (FAILED, RationaleStore, compact, conclusion, merge, rejection, summary,
                                  too_few_kept)

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
    assert rejection(no_scene, "abnormal", LABELS) == "missing: scenes"
    assert rejection(GOOD, "normal", LABELS).startswith("contradicts the label (concludes abnormal")


def test_a_description_without_reasoning_or_conclusion_is_not_a_rationale():
    description = GOOD.split("\nReasoning:")[0]  # the four dimensions only, what a describing model writes
    assert rejection(description, "abnormal", LABELS) == "missing: reasoning, conclusion"
    no_conclusion = GOOD.rsplit("\n", 1)[0]
    assert rejection(no_conclusion, "abnormal", LABELS) == "missing: conclusion"
    assert rejection(GOOD.replace("Reasoning:", "Notes:"), "abnormal", LABELS) == "missing: reasoning"
    no_scene = description.replace("\nScene: in the driveway at night.", "")
    assert rejection(no_scene + "\nConclusion: <abnormal>", "abnormal", LABELS) == "missing: scenes, reasoning"
    assert rejection(GOOD.replace("<abnormal>", "something is off"), "abnormal", LABELS) == "conclusion names no label"
    empty_reasoning = GOOD.replace("Reasoning: a wild animal at the house is a danger.", "**Reasoning:**")
    assert rejection(empty_reasoning, "abnormal", LABELS) == "missing: reasoning"
    assert rejection(GOOD.replace("**", "").replace("Reasoning:", "**Reasoning:**"), "abnormal", LABELS) is None
    echoed = GOOD.replace("<abnormal>", "one of <normal>, <abnormal>, <vague>")  # the prompt's options echoed back
    assert rejection(echoed, "normal", LABELS) == "conclusion names several labels"
    assert rejection(GOOD.replace("<abnormal>", "<abnormal> or <vague>"), "abnormal", LABELS) == (
        "conclusion names several labels")
    # a label with an underscore, written as words
    animals = ["no_animal", "pet", "large_wildlife"]
    assert conclusion(GOOD.replace("<abnormal>", "large wildlife (a bear)"), animals) == "large_wildlife"
    assert rejection(GOOD.replace("<abnormal>", "<large-wildlife>"), "large_wildlife", animals) is None
    # rationales written elsewhere (rbft's layout not asked of them) need none of these lines
    assert rejection(description, "abnormal", LABELS, dimensions=False) is None


def test_stage_one_stops_when_most_rationales_are_rejected():
    kept = [rec(f"k{i}") for i in range(4)]
    bare = [rec(f"r{i}", rejected="missing: reasoning, conclusion") for i in range(6)]
    stop = too_few_kept(summary(kept + bare), 0.5)
    assert stop.startswith("Stage I stopped: only 4 of 10 rationales") and "missing: reasoning, conclusion 6" in stop
    assert "rationales.source: teacher" in stop and "rationales.min_kept_share" in stop
    assert too_few_kept(summary(kept + bare[:4]), 0.5) is None  # half kept is enough
    assert too_few_kept(summary(kept + bare), 0.4) is None
    assert too_few_kept(summary(kept[:3] + bare[:4]), 3 / 7) is None  # no float edge
    failed = [rec(f"f{i}", rejected=f"{FAILED}: HTTP 500") for i in range(6)]
    assert "6 generation(s) failed: run again to retry them" in too_few_kept(summary(kept + failed), 0.5)
    assert "rationale file covers the training videos" in too_few_kept(summary(kept + bare), 0.5, "file")


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
            rec("c", rejected="too short (5 words, fewer than 12)"), rec("d", rejected="empty"),
            rec("e", rejected="missing: reasoning, conclusion")]
    facts = summary(rows)
    assert facts["records"] == 5 and facts["kept"] == 1 and facts["rejected"] == 4
    assert facts["rejected_by_reason"] == {"too short": 2, "empty": 1, "missing: reasoning, conclusion": 1}
    assert facts["words"]["median"] == len(GOOD.split()) and facts["by_label"] == {"abnormal": 1}
