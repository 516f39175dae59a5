"""`rbft run` killed with SIGKILL during every stage in turn, and run again each time: what finished is not redone."""

import json
import signal
import time
from pathlib import Path

import pytest

from .conftest import rbft

ABLATION = {"stage1-2-epochs": {"training": {"stage1": {"epochs": 2, "learning_rate": 2e-4}}}}


def markers(out: Path) -> dict[str, dict]:
    """Every done marker of the run and its ablations, by path relative to the run folder."""
    found = {}
    for path in sorted(out.glob("done/*.json")) + sorted(out.glob("ablations/*/done/*.json")):
        try:
            found[str(path.relative_to(out))] = json.loads(path.read_text())
        except ValueError:  # caught mid-replace: read it next time
            pass
    return found


@pytest.mark.slow  # about 3 minutes on 2 cores
def test_sigkill_during_every_stage_then_rerun_redoes_nothing_finished(make_config, tmp_path):
    config, out = make_config(source="scene", extra={"ablations": ABLATION}), tmp_path / "run"
    killed_in: list[str] = []
    before: dict[str, dict] = {}
    for attempt in range(30):
        proc = rbft("run", config, "--out", out)
        victim = None
        while proc.poll() is None and victim is None:
            running = [name for name, m in markers(out).items() if not m.get("complete") and name not in killed_in]
            if running:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                victim = running[0]
            time.sleep(0.005)
        finished = {name: m for name, m in markers(out).items() if m.get("complete")}
        if victim is None:
            stdout, stderr = proc.communicate()
            assert proc.returncode == 0, stderr[-3000:]
            break
        killed_in.append(victim)
        # what was complete at the previous kill is untouched (not started again, not rewritten)
        assert all(finished.get(name) == m for name, m in before.items()), victim
        before = finished
    else:
        raise AssertionError(f"the run never finished; killed during {killed_in}")
    assert all(finished.get(name) == m for name, m in before.items())
    stages = {Path(name).stem for name in killed_in}
    expected = {"check", "rationales", "stage1-seed0", "stage2-seed0", "direct_sft-seed0", "eval-zero_shot",
                "eval-direct_sft-seed0", "eval-rbft-seed0", "attention", "report"}
    assert expected <= stages, sorted(stages)
    assert any(name.startswith("ablations/") for name in killed_in)  # an ablation's own stages too
    results = json.loads((out / "results.json").read_text())
    assert set(results["ablations"]) == set(ABLATION) and (out / "report.html").exists()
