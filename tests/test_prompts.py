import pytest

from rbft.prompts import DIMENSIONS, label_prompt, parse_label, rationale_prompt, sha256, system_prompt
from rbft.world.tasks import TASKS

TASK = TASKS["home-security"]


def test_label_conditioned_prompt_states_the_label_and_asks_for_the_layout():
    text = rationale_prompt(TASK, "abnormal")
    assert "<abnormal>" in text and TASK.labels["abnormal"] in text
    assert TASK.question in text
    for heading in ("Subjects:", "Attributes:", "Actions:", "Scenes:", "Reasoning:", "Conclusion:"):
        assert heading in text
    assert all(d in text for d in DIMENSIONS)
    # the conclusion line names the stated label alone: no other label is anywhere in the prompt
    assert text.rstrip().endswith("Conclusion: <abnormal>")
    assert "<normal>" not in text and "<vague>" not in text


def test_label_free_prompt_does_not_give_the_label_away():
    text = rationale_prompt(TASK)
    assert "label of this video" not in text
    assert text.count("<abnormal>") == 1 and text.count("<normal>") == 1  # only in the list of options
    assert sha256(text) != sha256(rationale_prompt(TASK, "abnormal"))
    assert sha256(rationale_prompt(TASK, "normal")) != sha256(rationale_prompt(TASK, "abnormal"))


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="not one of the task's labels"):
        rationale_prompt(TASK, "dangerous")


def test_persona_and_label_prompt():
    assert system_prompt(TASK) == "You are a Smart Home Security Expert."
    prompt = label_prompt(TASK)
    assert all(f"<{label}>" in prompt for label in TASK.labels)


@pytest.mark.parametrize("reply, label", [
    ("<abnormal>", "abnormal"),
    ("The answer is < Vague >.", "vague"),
    ("Subjects: a bear.\nReasoning: not normal at all.\nConclusion: abnormal", "abnormal"),
    ("A resident waters the plants. It looks normal.", "normal"),
    ("It is abnormal.", "abnormal"),  # "abnormal" never counts as "normal"
    ("Could be normal or abnormal.", None),  # two labels named: no answer
    ("A dog walks past the porch.", None),
    ("non-normal", None),
    ("<normal> because nothing else happens; <abnormal> would need an intruder", "normal"),  # the first answer
])
def test_free_replies_parse_to_a_label_or_fail(reply, label):
    assert parse_label(reply, list(TASK.labels)) == label
