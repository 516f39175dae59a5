"""The bootstrap of results.json, measured side by side in one run.

Every run's evaluation (and every re-run, which rewrites results.json) draws 2000 resamples of
the test videos per method for its 95% intervals, and 2000 more for RB-FT minus direct SFT.
Here, for a three-label task with two seeds:

reference_s  one draw at a time with scikit-learn's f1_score, as rbft did before (the
             reference in tests/test_metrics.py)
rbft_s       rbft.metrics.interval + compare: every draw at once, labels as integer codes
speedup      reference_s / rbft_s                                       goal >= 20
same         both give the same intervals to the last bit

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rbft.metrics import compare, interval  # noqa: E402
from tests.test_metrics import _sklearn_bootstrap  # noqa: E402

LABELS, SEEDS, RESAMPLES = ["normal", "abnormal", "vague"], 2, 2000


def main() -> None:
    figures = {"machine": platform.processor() or platform.machine(), "resamples": RESAMPLES, "seeds": SEEDS}
    for n in (64, 1000):  # the demo's test split; a real dataset's
        rng = np.random.default_rng(n)
        truth = rng.choice(LABELS, n, p=[0.6, 0.25, 0.15])
        a = [np.where(rng.random(n) < 0.7, truth, rng.choice(LABELS, n)) for _ in range(SEEDS)]
        b = [np.where(rng.random(n) < 0.5, truth, rng.choice(LABELS, n)) for _ in range(SEEDS)]
        start = time.perf_counter()
        one, pair = _sklearn_bootstrap(truth, a, b, LABELS, RESAMPLES, seed=0)
        reference_s = time.perf_counter() - start
        start = time.perf_counter()
        got_one, got_pair = interval(truth, a, LABELS, RESAMPLES), compare(truth, a, b, LABELS, RESAMPLES)["delta"]
        rbft_s = time.perf_counter() - start
        same = (got_one == {"accuracy": list(one[:, 0]), "macro_f1": list(one[:, 1])}
                and [got_pair[k]["ci95"] for k in ["macro_f1", "accuracy", *[f"f1:{x}" for x in LABELS]]]
                == pair.T.tolist())
        figures[f"videos_{n}"] = {"reference_s": round(reference_s, 3), "rbft_s": round(rbft_s, 4),
                                  "speedup": round(reference_s / rbft_s, 1), "same": same}
        print(f"{n:5d} test videos: scikit-learn one draw at a time {reference_s:6.2f} s, rbft {rbft_s:.3f} s: "
              f"{reference_s / rbft_s:.0f}x, same intervals: {same}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
