"""The data check: every video of the manifest decoded as training will; the unusable ones are listed in
`errors.jsonl`, with their kind and what to do, and left out of every later stage."""

from __future__ import annotations

from rbft.data.cache import FrameCache
from rbft.data.check import check_videos, summarize, write_errors
from rbft.data.jsonl import read_jsonl
from rbft.data.manifest import VideoRecord, limit_train
from rbft.errors import ConfigError
from rbft.runs import Run, stage_key

ERRORS = "errors.jsonl"


def check(run: Run, records: list[VideoRecord], cache: FrameCache) -> dict | None:
    """Decode every video (into the frame cache); returns the counts of usable videos and of each error kind."""
    data = run.config.data

    def work() -> dict:
        tick = run.bar("checking videos", len(records))
        results = check_videos(records, data.sampling(), cache=cache, workers=data.decode_workers,
                               on_result=(lambda _: tick()) if tick else None)
        write_errors(results, run.out / ERRORS)
        counts = summarize(results)
        dropped = len(results) - counts["usable"]
        if dropped:
            run.log(f"data check: {dropped} of {len(results)} videos unusable, listed in {ERRORS}; the run goes on "
                    "without them")
        return counts

    return run.stage("check", stage_key(run.config, "check"), work, borrow=False)


def usable_splits(run: Run, records: list[VideoRecord]) -> dict[str, list[VideoRecord]]:
    """The train, val and test videos the check found usable; train cut to `data.train_limit`."""
    bad = {row["id"] for row in read_jsonl(run.out / ERRORS)}
    splits = {s: [r for r in records if r.split == s and r.id not in bad] for s in ("train", "val", "test")}
    splits["train"] = limit_train(splits["train"], run.config.data.train_limit)
    if not splits["train"]:
        raise ConfigError(f"{run.config.data.manifest}: no usable training video (see {run.out / ERRORS})")
    return splits
