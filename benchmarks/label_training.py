"""Does label training reach what the model represents? The demo's experiment, one run, every figure side by side.

On the demo's own split (the world of `rbft demo`: 160 train / 40 val / 300 test clips; `--quick`:
the quick demo's 64 / 16 / 64), with the demo's settings (or those changed by `--set`, one choice
at a time, e.g. `--set training.stage2.learning_rate=3e-4`):

probe                  the `probe` method: a linear probe on the frozen base model's features
                       (features and C chosen on val), calibrated like every method
zero_shot, direct_sft, rbft, rbft[ground-truth-rationales]
                       each method's test macro-F1 and accuracy with calibrated decisions (tau x log
                       train prior, tau chosen on val) and raw (the argmax of the label scores), and
                       its predicted label counts (a model that answers one label shows as such)
representations        per-stage probes: a linear probe on each model's label-position features
                       (base model, M_inter, M*, direct SFT), macro-F1 mean over seeds
majority_macro_f1      a classifier that answers the majority label for every clip

RB-FT on the base model's own rationales is missing when the filter refuses them (the demo then
says why); the teacher arm (the world's ground-truth rationales) is RB-FT's other arm. The last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rbft.config import load_config
from rbft.demo import FULL, QUICK, prepare
from rbft.pipeline import run


def changed(path: Path, settings: list[str], seeds: list[int] | None) -> Path:
    """The demo's config at `path` with `key.sub=value` settings (YAML values) and seeds changed, written back."""
    config = yaml.safe_load(path.read_text())
    for setting in settings:
        key, _, value = setting.partition("=")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    if seeds is not None:
        config["seeds"] = seeds
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def method_figures(m: dict) -> dict:
    raw = m.get("raw", m)
    return {"macro_f1": round(m["macro_f1"], 4), "accuracy": round(m["accuracy"], 4),
            "raw_macro_f1": round(raw["macro_f1"], 4), "raw_accuracy": round(raw["accuracy"], 4),
            "tau": m.get("tau"), "predicted": m["predicted_counts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick demo's split (64 / 16 / 64 clips)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the demo's)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting changed from the demo's, e.g. training.stage2.learning_rate=3e-4")
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        t = time.perf_counter()
        config = load_config(changed(prepare(folder / "demo.yaml", QUICK if args.quick else FULL), args.settings,
                                     args.seeds))
        results = run(config, folder / "run", log=lambda m: print(m, file=sys.stderr))["results"]
        seconds = time.perf_counter() - t
    methods = {name: method_figures(m) for name, m in results["methods"].items()}
    for name, ablation in results.get("ablations", {}).items():
        methods.update({f"{method}[{name}]": method_figures(m) for method, m in ablation["methods"].items()
                        if method != "direct_sft"})
    representations = {stage: round(m["macro_f1"], 4)
                       for stage, m in results.get("representations", {}).get("models", {}).items()}
    for name, ablation in results.get("ablations", {}).items():
        representations.update({f"{stage}[{name}]": round(m["macro_f1"], 4) for stage, m in
                                ablation.get("representations", {}).get("models", {}).items() if stage != "direct_sft"})
    support = [c["support"] for c in results["methods"]["zero_shot"]["per_class"].values()]
    share = max(support) / sum(support)
    result = {"split": "quick" if args.quick else "demo", "settings": args.settings, "seeds": config.seeds,
              "test_labels": dict(zip(results["labels"], support)), "decisions": results.get("decisions"),
              "methods": methods, "representations": representations,
              "refused": results.get("refused", {}).get("rbft"),
              "majority_macro_f1": round(2 * share / (1 + share) / len(support), 4),
              "seconds": round(seconds, 1), "machine": f"{platform.machine()} {platform.python_version()}"}
    for name, m in methods.items():
        print(f"{name}: macro-F1 {m['macro_f1']:.3f} (raw {m['raw_macro_f1']:.3f}), accuracy {m['accuracy']:.3f} "
              f"(raw {m['raw_accuracy']:.3f}), tau {m['tau']}, predicted {m['predicted']}", file=sys.stderr)
    print("per-stage probes (macro-F1): " + ", ".join(f"{k} {v:.3f}" for k, v in representations.items()),
          file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
