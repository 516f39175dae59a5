"""The commands: `rbft run`, `data`, `predict`, `export`, `serve` (and `world`, `demo` from `rbft.cli.world`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

import rbft
from rbft.cli.console import bars, err, fail, one_bar, out, print_results
from rbft.cli.world import demo, world_app
from rbft.errors import RbftError

app = typer.Typer(
    help="Rationale-Bootstrapped Fine-Tuning (RB-FT) of vision-language models for video classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Check datasets before any training.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(world_app, name="world")


def _version(value: bool) -> None:
    if value:
        print(f"rbft {rbft.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """rbft: turn a general VLM and a few labelled videos into a domain video classifier."""


@data_app.command("check")
def data_check(
    source: Path = typer.Argument(..., help="A manifest (.jsonl or .csv), or a folder of videos."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list, an object per video."),
    errors: Optional[Path] = typer.Option(None, "--errors", help="Write unusable videos to this errors.jsonl."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="Experiment YAML: check labels against its task and use its frame sampling."
    ),
    workers: int = typer.Option(0, "--workers", help="Parallel decoding processes (0: one per core)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or fill the decoded-frame cache."),
) -> None:
    """Decode every video as training will and report each unusable one with its kind.

    Exit 0 when all are usable, 1 when some are not, 2 when the manifest itself is unusable.
    """
    from rbft.data.cache import FrameCache
    from rbft.data.check import summarize, write_errors
    from rbft.data.manifest import load_manifest, records_from_folder
    from rbft.sampling import FrameSampling

    try:
        sampling, labels = FrameSampling(), None
        if config is not None:
            from rbft.config import load_config

            cfg = load_config(config)
            sampling, labels = cfg.data.sampling(), list(cfg.task.labels)
        records = records_from_folder(source) if source.is_dir() else load_manifest(source, labels)
    except RbftError as e:
        raise fail(e) from None
    if not records:
        err.print(f"[red]error:[/red] no videos found in {escape(str(source))}")
        raise typer.Exit(2)

    results = _check_with_progress(records, sampling, None if no_cache else FrameCache(), workers)
    if errors is not None:
        write_errors(results, errors)
    counts = summarize(results)
    if as_json:
        print(json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=1))
    else:
        _print_check(results, counts, errors)
    raise typer.Exit(0 if counts["usable"] == len(results) else 1)


@data_app.command("import")
def data_import(
    fmt: str = typer.Argument(..., help="smarthome-bench, multihateclip or rbft-authors."),
    source: Path = typer.Argument(..., help="The dataset's published annotation file, or the folder that holds it."),
    out_file: Path = typer.Option(..., "--out", help="The manifest (.jsonl) to write."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of the downloaded videos (found by id)."),
    binary: bool = typer.Option(False, "--binary", help="smarthome-bench: vague counts as abnormal; "
                                "multihateclip: hateful_or_offensive vs normal."),
    language: str = typer.Option("english", "--language", help="multihateclip: english or chinese."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified split, for datasets without splits."),
    val: float = typer.Option(0.1, "--val", help="Validation share of that split."),
    test: float = typer.Option(0.2, "--test", help="Test share of that split."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Turn a public dataset's annotation files into an rbft manifest; name the rows it could not use and why."""
    from rbft.data.adapters import FORMATS, import_dataset

    try:
        if fmt not in FORMATS:
            raise RbftError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        summary = import_dataset(fmt, source, out_file, videos, binary, language, seed, val, test)
    except RbftError as e:
        raise fail(e) from None
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=1))
        return
    labels = sorted(summary["labels"])
    table = Table("split", *labels, title=f"{summary['records']} videos ({fmt}) -> {escape(str(out_file))}")
    for split, counts in summary["splits"].items():
        table.add_row(split, *(str(counts.get(x, 0)) for x in labels))
    out.print(table)
    if summary.get("categories"):
        out.print("categories: " + ", ".join(f"{escape(k)} {v}" for k, v in sorted(summary["categories"].items())))
    for row in summary["skipped"]:
        out.print(f"[yellow]not used[/yellow] {escape(row['source'])} ({escape(str(row['id']))}): {escape(row['reason'])}")
    for note in summary["notes"]:
        out.print(f"note: {escape(note)}")
    if summary.get("rationales"):
        r = summary["rationales"]
        out.print(f"{r['records']} reference rationales written to {escape(r['file'])} "
                  "(use them with `rationales: {source: file, file: ...}`)")
    if summary["videos_missing"]:
        out.print(f"{summary['videos_missing']} of {summary['records']} videos are not there yet"
                  + ("" if videos else " (no --videos given)") + "; their records point where they are expected. "
                  "Download them, then `rbft data check` the manifest.")


def _print_check(results, counts, errors_path) -> None:
    bad = [r for r in results if not r.ok]
    if bad:
        table = Table("id", "kind", "what to do", title="unusable videos", show_lines=False)
        for r in bad:
            table.add_row(escape(r.id), r.error_kind, escape(r.message or ""))
        out.print(table)
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.items() if kind != "usable")
    out.print(f"{counts['usable']} of {len(results)} videos usable" + (f"; dropped: {parts}" if parts else ""))
    if errors_path is not None and bad:
        out.print(f"error list written to {escape(str(errors_path))}")


def _check_with_progress(records, sampling, cache, workers: int = 0):
    from rbft.data.check import check_videos

    with one_bar(len(records), "checking videos") as advance:
        return check_videos(records, sampling, cache=cache, workers=workers, on_result=lambda _: advance())


@app.command("run")
def run_command(
    config: Path = typer.Argument(..., help="The experiment YAML (see `rbft demo --write-config`)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    only: Optional[str] = typer.Option(None, "--only", help="Run this stage only (after the data check it needs)."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Skip finished stages and resume cut ones (default), or start them afresh."),
) -> None:
    """Run the experiment's stages in order; a re-run skips what is done and resumes what was cut short."""
    from rbft.config import load_config
    from rbft.pipeline import run

    try:
        cfg = load_config(config)
        folder = out_dir or Path("runs") / cfg.name
        with bars() as progress:
            facts = run(cfg, folder, only=only, fresh=not resume, log=lambda m: err.print(escape(m)),
                        progress=progress)
    except RbftError as e:
        raise fail(e) from None
    from rbft.runs import process_state

    if not process_state().is_main_process:  # under accelerate or torchrun the main process speaks for all
        return
    if "rationales" in facts and facts["rationales"]:
        r = facts["rationales"]
        table = Table("records", "kept", "rejected", "words (median)", title=f"rationales ({escape(str(folder))})")
        table.add_row(str(r["records"]), str(r["kept"]), str(r["rejected"]), str(r["words"].get("median", "")))
        out.print(table)
        for reason, n in r["rejected_by_reason"].items():
            out.print(f"  rejected, {escape(reason)}: {n}")
    if facts.get("results"):
        print_results(facts["results"], folder)


@app.command()
def predict(
    videos: list[Path] = typer.Argument(..., help="Video files to classify."),
    model: Path = typer.Option(..., "--model", help="A classifier rbft trained (e.g. runs/NAME/models/rbft/seed0)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list, an object per video."),
) -> None:
    """Classify videos with a trained model, by label scoring. Exit 1 when some videos are unusable."""
    from rbft.predict import classify

    try:
        results = classify(model, videos)
    except RbftError as e:
        raise fail(e) from None
    if as_json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    else:
        table = Table("video", "label", "scores (log-probability)", title=f"rbft predict ({escape(str(model))})")
        for r in results:
            scores = ", ".join(f"{k} {v:.2f}" for k, v in r.get("scores", {}).items())
            table.add_row(escape(r["video"]), escape(r.get("predicted") or f"unusable: {r['error']}"),
                          escape(scores or r.get("message", "")))
        out.print(table)
    raise typer.Exit(1 if any("error" in r for r in results) else 0)


@app.command()
def export(
    manifest: Path = typer.Argument(..., help="The manifest whose videos to export."),
    fmt: str = typer.Option(..., "--format", help="llamafactory or sharegpt."),
    config: Path = typer.Option(..., "--config", help="Experiment YAML: its task gives the persona and prompts."),
    out_file: Path = typer.Option(..., "--out", help="The JSON file to write (llamafactory: dataset_info.json beside it)."),
    split: str = typer.Option("train", "--split", help="train, val or test."),
    rationales: Optional[Path] = typer.Option(None, "--rationales",
                                              help="A run's rationales.jsonl: export Stage I's data instead of labels."),
) -> None:
    """Write rbft's training conversations (labels, or Stage I's rationales) for LLaMA-Factory or ShareGPT tools."""
    from rbft.config import load_config
    from rbft.export import FORMATS
    from rbft.export import export as write
    from rbft.data.manifest import load_manifest
    from rbft.data.rationales import RationaleStore

    try:
        if fmt not in FORMATS:
            raise RbftError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        cfg = load_config(config)
        records = [r for r in load_manifest(manifest, cfg.task.labels) if r.split == split]
        if rationales is not None and not rationales.is_file():
            raise RbftError(f"--rationales {rationales}: no such file (a run folder's rationales.jsonl)")
        by_id = RationaleStore(rationales).records if rationales is not None else None
        n = write(cfg, records, out_file, fmt, by_id)
    except RbftError as e:
        raise fail(e) from None
    out.print(f"wrote {n} {split} conversations to {escape(str(out_file))} ({fmt})")


@app.command()
def serve(
    model: str = typer.Option(..., "--model", help="A model folder, hub name, or rbft-world-base."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    name: Optional[str] = typer.Option(None, "--name", help="The model name clients send (default: --model)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Requests generated together at most."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Run the model repo's own code."),
) -> None:
    """Answer OpenAI-compatible chat completions (frames as images) with any rbft model; a classifier rbft trained
    also answers /v1/classify (its label, as `rbft predict` decides)."""
    from rbft.modeling import inference_device, load_model, load_processor
    from rbft.serve import make_server

    try:
        processor = load_processor(model, trust_remote_code)
        loaded = load_model(model, dtype, trust_remote_code=trust_remote_code, device=inference_device())
    except RbftError as e:
        raise fail(e) from None
    from rbft.predict import TASK_FILE

    meta = Path(model) / TASK_FILE  # a classifier rbft trained also answers /v1/classify
    classifier = json.loads(meta.read_text()) if meta.is_file() else None
    server = make_server(loaded, processor, name or model, host, port, batch_size, classifier)
    # plain print: one unwrapped line that scripts (and the tests) read the port from
    print(f"serving {name or model} at http://{host}:{server.server_port}/v1 (Ctrl-C stops)", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


app.command()(demo)  # `rbft demo`, listed after the other commands


if __name__ == "__main__":
    app()
