"""The data check: decode every video the way training will, in parallel, and list what is unusable.

A bad file never stops the check: each gets a result with its error kind, and even a
decoder that crashes its worker process is caught and reported as `decode_error`.
Checked videos are left in the frame cache, so training does not decode them again.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from rbft.data.cache import FrameCache
from rbft.data.manifest import VideoRecord
from rbft.data.video import read_video
from rbft.errors import VideoError
from rbft.sampling import FrameSampling


@dataclass(frozen=True)
class CheckResult:
    """One video's verdict; the fields are `rbft data check --json`'s stable schema."""

    id: str
    video: str
    ok: bool
    error_kind: str | None = None
    message: str | None = None
    width: int | None = None  # of the upright picture, before resizing
    height: int | None = None
    duration_s: float | None = None
    frames_sampled: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


_caches: dict[str, FrameCache] = {}  # one per cache folder and process: it tracks the folder's size


def check_video(record_id: str, video: str, sampling: FrameSampling, cache_root: str | None) -> CheckResult:
    """Decode one video as training would; never raises."""
    try:
        if cache_root:
            clip = _caches.setdefault(cache_root, FrameCache(cache_root)).load(video, sampling)
        else:
            clip = read_video(video, sampling)
    except VideoError as e:
        return CheckResult(record_id, video, False, e.kind, e.message)
    except Exception as e:  # noqa: BLE001 - an unforeseen failure is this video's problem, not the run's
        return CheckResult(record_id, video, False, "decode_error", f"unexpected {type(e).__name__}: {e}")
    info = clip.info
    return CheckResult(
        record_id, video, True, None, None, info.width, info.height, round(info.duration_s, 3), len(clip.frames)
    )


def check_videos(
    records: Sequence[VideoRecord],
    sampling: FrameSampling,
    *,
    cache: FrameCache | None = None,
    workers: int = 0,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Check every record, `workers` processes at a time (0: one per core); results in record order."""
    workers = workers or os.cpu_count() or 1
    root = str(cache.root) if cache is not None else None
    jobs = [(r.id, str(r.video), sampling, root) for r in records]
    results: dict[int, CheckResult] = {}

    def done(i: int, result: CheckResult) -> None:
        results[i] = result
        if on_result:
            on_result(result)

    if workers == 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            done(i, check_video(*job))
    else:
        _run_pool(jobs, min(workers, len(jobs)), done)
    return [results[i] for i in range(len(jobs))]


def _run_pool(jobs, workers, done) -> None:
    # spawn, not fork: the caller may hold threads (torch, a progress bar) that fork would copy mid-lock
    context = multiprocessing.get_context("spawn")
    pending = set(range(len(jobs)))
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(check_video, *jobs[i]): i for i in pending}
            for future in as_completed(futures):
                i = futures[future]
                done(i, future.result())
                pending.discard(i)
    except BrokenProcessPool:
        # a worker died (a decoder crash): retry the unfinished ones alone, to find the culprit
        for i in sorted(pending):
            done(i, _check_isolated(jobs[i], context))


def _check_isolated(job, context) -> CheckResult:
    try:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(check_video, *job).result()
    except BrokenProcessPool:
        return CheckResult(
            job[0], job[1], False, "decode_error",
            "the decoder crashed on this file. Re-encode it (e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`) "
            "or drop it from the manifest.",
        )


def write_errors(results: Sequence[CheckResult], path: str | Path) -> int:
    """Write one line per unusable video (id, video, kind, message) to `path`; returns the count."""
    bad = [r for r in results if not r.ok]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in bad:
            line = {"id": r.id, "video": r.video, "kind": r.error_kind, "message": r.message}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return len(bad)


def summarize(results: Sequence[CheckResult]) -> dict[str, int]:
    """{'usable': n, <error kind>: n, ...} with only the kinds that occur."""
    counts = {"usable": sum(r.ok for r in results)}
    for r in results:
        if not r.ok:
            counts[r.error_kind] = counts.get(r.error_kind, 0) + 1
    return counts
