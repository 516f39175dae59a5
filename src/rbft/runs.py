"""The run folder: what each stage's output depends on (its key), done markers, borrowing, and the run's processes.

Each stage writes `done/<stage>[-seed<k>].json` with its key, the hash of the settings its
output depends on, when it finishes; a re-run skips a stage whose key matches and whose
outputs are there, and resumes one that was cut short (the stage itself knows how: the
rationales written, the training's last checkpoint). A stage whose settings changed
starts afresh, and its earlier outputs are moved aside, not lost.

A run can have a parent (an ablation's or a label-budget point's run has the main run):
it borrows, as hard links, what the parent finished with the same key, so nothing is
trained or scored twice.

Under `accelerate launch` or `torchrun` every process runs the same stages in the same
order; the main process decides whether a stage is done (for all of them), writes the
markers and speaks for all.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from rbft.config import ExperimentConfig


def process_state(timeout_s: float | None = None):
    """accelerate's view of the processes of this run (one, or several under torchrun / accelerate launch).

    The first call makes the process group, so it sets how long a process waits for the others
    (`timeout_s`; `training.process_timeout_s`, which `rbft.pipeline.run` passes first): while the
    main process alone checks the data, scores every model and writes the report, the others wait
    at a barrier, far past NCCL's 10-minute default on real data. Without a GPU, processes join
    over gloo on the CPU; accelerate only does that when told.
    """
    import torch
    from accelerate import PartialState

    wait = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s is not None else {}
    return PartialState(cpu=not torch.cuda.is_available(), **wait)


def agree(decision):
    """The main process's `decision`, for every process (a stage is skipped by all or by none; all or none
    enter a collective step)."""
    state = process_state()
    if state.num_processes == 1:
        return decision
    from accelerate.utils import broadcast_object_list

    shared = [decision]
    broadcast_object_list(shared, from_process=0)
    return shared[0]


def by_main(work: Callable[[], object]) -> None:
    """`work` done by the main process alone, and every process waits for it (one writer of a file or folder)."""
    state = process_state()
    if state.is_main_process:
        work()
    state.wait_for_everyone()


# training settings that change how a run goes, not what it makes
RUNNING_ONLY = {"report_to", "process_timeout_s", "checkpoints", "dataloader_workers"}


def shipped_weights(config: ExperimentConfig) -> tuple[str, ...]:
    """The sha256 of the shipped base model's weights when `config` uses it, else nothing: a new rbft ships a new
    model under the same name, and a run folder made with the old one must not be resumed with it."""
    from rbft.modeling import SHIPPED_MODEL, SHIPPED_NAMES

    if config.model.name_or_path not in SHIPPED_NAMES:
        return ()
    weights = SHIPPED_MODEL / "model.safetensors"
    return (_file_sha256(str(weights), weights.stat().st_mtime_ns, weights.stat().st_size),)


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_key(config: ExperimentConfig, stage: str, seed: int | None = None) -> str:
    """The hash of everything `stage`'s output depends on (for training stages, with `seed`)."""
    manifest = hashlib.sha256(config.data.manifest.read_bytes()).hexdigest()
    check = _hash("check", manifest, config.data.model_dump(mode="json", exclude={"decode_workers", "train_limit"}))
    if stage == "check":
        return check
    base = (check, config.task.model_dump(), config.model.model_dump(), config.data.train_limit,
            *shipped_weights(config))
    training = config.training.model_dump(mode="json", exclude=RUNNING_ONLY)
    if training["balance"] == "none":  # (runs from before these options keep their keys)
        del training["balance"]
    if not training["select_min_val"]:
        del training["select_min_val"]
    if training["attention_dropout"] is None:
        del training["attention_dropout"]
    for stage_budget in ("stage1", "stage2"):
        for key in ("min_steps", "freeze_embeddings"):  # (runs from before these options keep their keys)
            if not training[stage_budget][key]:
                del training[stage_budget][key]
    if stage == "rationales":
        r = config.rationales.model_dump(mode="json", exclude={"concurrency", "timeout_s", "retries", "batch_size",
                                                                "min_kept_share", "on_too_few"})
        if r["file"] is None:
            del r["file"]  # (runs from before the file source keep their key)
        elif config.rationales.file.is_file():
            r["file"] = hashlib.sha256(config.rationales.file.read_bytes()).hexdigest()  # its content, not its name
        return _hash(stage, *base, r, config.seeds[0])
    if stage == "stage1":
        return _hash(stage, stage_key(config, "rationales"), {k: v for k, v in training.items() if k != "stage2"}, seed)
    calibration = [] if config.eval.calibration == "none" else [  # kept in the classifier's folder
        config.eval.calibration, config.eval.calibration_min_val]
    if stage == "stage2":
        return _hash(stage, stage_key(config, "stage1", seed), training["stage2"], seed, *calibration)
    if stage == "direct_sft":
        return _hash(stage, *base, {k: v for k, v in training.items() if k != "stage1"}, seed, *calibration)
    raise AssertionError(stage)


def eval_key(config: ExperimentConfig, trained: str, test_ids: list[str]) -> str:
    """The key of one model's predictions: the key of the stage that made the model (`trained`), and the test."""
    return _hash("eval", trained, config.model.model_dump(), config.task.model_dump(),
                 config.eval.model_dump(exclude={"batch_size"}), test_ids, stage_key(config, "check"),
                 *shipped_weights(config))


def attention_key(config: ExperimentConfig, test_ids: list[str]) -> str:
    """The key of the attention figures: the first seed's two classifiers and the test videos."""
    seed = config.seeds[0]
    return _hash("attention", stage_key(config, "stage2", seed), stage_key(config, "direct_sft", seed), test_ids)


def report_key(config: ExperimentConfig, results: Path) -> str:
    """The key of the report: the very results it shows, and the config."""
    return _hash("report", hashlib.sha256(results.read_bytes()).hexdigest(), config.model_dump(mode="json"))


class Unfinished(dict):
    """The facts of a stage that did its work but is not done: it is not marked, and the next run goes on."""


class Run:
    """A run folder: its config, its stages' done markers and outputs, and the parent run it borrows from.

    `fresh` starts every stage afresh (`--no-resume`); `progress(what, total)`, when given, makes a
    progress bar and returns its tick (the main process's only).
    """

    def __init__(self, out: Path, config: ExperimentConfig, log: Callable[[str], None] = print,
                 parent: "Run | None" = None, fresh: bool = False, progress: Callable | None = None):
        state = process_state()
        main = state.is_main_process
        self.out, self.config, self.parent, self.fresh = out, config, parent, fresh
        self.log = log if main else (lambda message: None)  # one voice
        self.progress = progress if main else None
        (out / "done").mkdir(parents=True, exist_ok=True)
        if main:
            (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))

    def bar(self, what: str, total: int) -> Callable[[], None] | None:
        """A progress bar's tick, or None (no bar asked for, or not the main process)."""
        return self.progress(what, total) if self.progress else None

    def marker(self, name: str) -> dict | None:
        path = self.out / "done" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def is_done(self, name: str, key: str) -> bool:
        marker = self.marker(name)
        return bool(marker and marker.get("complete") and marker.get("key") == key)

    def stage(self, name: str, key: str, work: Callable[[], dict | None], outputs: tuple[str, ...] = (), *,
              everyone: bool = False, borrow: bool = True, aside: bool = True, doing: str | None = None,
              skipped: str | None = None, discard: tuple[Path, ...] = ()) -> dict | None:
        """Run `work` as stage `name` unless it is done with `key` (its `outputs` there) or the parent run did it
        (then its outputs are borrowed); returns the stage's facts.

        `everyone`: every process works (training, generation), else the main process alone. `aside`:
        outputs that other settings made are moved aside first, else overwritten. `doing` and `skipped`
        are said when the work starts or is skipped. `discard`: what the finished stage no longer needs.
        """
        state = process_state()
        done = not self.fresh and self.is_done(name, key) and all((self.out / o).exists() for o in outputs)
        borrowing = not self.fresh and not done and borrow and self._can_borrow(name, key, outputs)
        done, borrowing = agree((done, borrowing))
        if borrowing:
            self._borrow(name, outputs)
        if done or borrowing:
            if skipped:
                self.log(skipped)
            return (self.marker(name) or {}).get("facts", {})
        if state.is_main_process:
            self._start(name, key, outputs if aside else ())
        state.wait_for_everyone()
        if doing:
            self.log(doing)
        started = time.perf_counter()
        facts = work() if everyone or state.is_main_process else None
        if state.is_main_process and not isinstance(facts, Unfinished):
            self._write(name, {"key": key, "complete": True, "seconds": round(time.perf_counter() - started, 1),
                               **({"facts": facts} if facts else {})})
            for path in discard:  # only a cut run needs it
                shutil.rmtree(path, ignore_errors=True)
        state.wait_for_everyone()
        return facts

    def training(self, stage: str, seed: int, key: str, train: Callable[[Path, Path], None]) -> None:
        """A training stage for `seed`: checkpoints and logs in `train/<stage>/seed<k>`, the model in `models/`
        (`train(work, model_dir)` trains; every process takes part)."""
        name, work, model = f"{stage}-seed{seed}", self.out / "train" / stage / f"seed{seed}", self.model_dir(stage, seed)
        self.stage(name, key, lambda: train(work, model), (str(work.relative_to(self.out)),
                                                          str(model.relative_to(self.out))),
                   everyone=True, doing=f"{name}: training", skipped=f"{name}: done with these settings; skipped",
                   discard=() if self.config.training.keep_checkpoints else (work / "checkpoints",))

    def timings(self) -> dict[str, float | None]:
        """Seconds per finished stage, from the done markers; not the report's, which is made from them (its
        own time in results.json would change the results it was made from, and so redo it every run)."""
        return {p.stem: json.loads(p.read_text()).get("seconds") for p in sorted((self.out / "done").glob("*.json"))
                if p.stem != "report"}

    def model_dir(self, stage: str, seed: int) -> Path:
        """Where a training stage's model goes: `models/stage1`, `models/rbft` (Stage II), `models/direct_sft`."""
        return self.out / "models" / ("rbft" if stage == "stage2" else stage) / f"seed{seed}"

    def add_results(self, key: str, value) -> None:
        """Put `value`, unless empty, into results.json under `key` (every process calls; the main one writes)."""
        path = self.out / "results.json"

        def write() -> None:
            if value and path.exists():
                old = path.read_text()
                new = json.dumps({**json.loads(old), key: value}, indent=2) + "\n"
                if new != old:  # a re-run that changes nothing leaves the file alone
                    path.write_text(new)

        by_main(write)

    def _can_borrow(self, name: str, key: str, outputs: tuple[str, ...]) -> bool:
        parent = self.parent
        return parent is not None and parent.is_done(name, key) and all((parent.out / o).exists() for o in outputs)

    def _borrow(self, name: str, outputs: tuple[str, ...]) -> None:
        """Hard-link the parent's outputs of `name` here, with its marker."""
        state = process_state()
        if state.is_main_process:
            for output in outputs:
                source, dest = self.parent.out / output, self.out / output
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                dest.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, dest, copy_function=_link)
                else:
                    _link(source, dest)
            self._write(name, {**self.parent.marker(name), "borrowed_from": str(self.parent.out)})
            self.log(f"{name}: the same as in the main run; borrowed")
        state.wait_for_everyone()

    def _start(self, name: str, key: str, outputs: tuple[str, ...]) -> None:
        """Mark `name` begun; move aside outputs that other settings (or a fresh start) made."""
        marker = self.marker(name)
        if marker and (marker.get("key") != key or self.fresh):
            for output in outputs:
                path = self.out / output
                if path.exists():
                    aside = path.with_name(f"{path.stem}.{marker.get('key', 'old')[:8]}{path.suffix}")
                    if aside.exists():
                        shutil.rmtree(aside) if aside.is_dir() else aside.unlink()
                    path.rename(aside)
                    self.log(f"{name}: settings changed since {output} was written; kept it as {aside.name}")
        self._write(name, {"key": key, "complete": False, "started_at": time.time()})

    def _write(self, name: str, marker: dict) -> None:
        path = self.out / "done" / f"{name}.json"
        path.with_suffix(".tmp").write_text(json.dumps(marker, indent=2) + "\n")
        path.with_suffix(".tmp").replace(path)


def _link(source, dest) -> None:
    """A hard link where the file system allows, else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
