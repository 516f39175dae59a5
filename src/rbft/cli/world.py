"""`rbft world` (the synthetic world and the base model's recipe) and `rbft demo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

import rbft
from rbft.cli.console import bars, err, fail, one_bar, out, print_results
from rbft.errors import RbftError

world_app = typer.Typer(help="The built-in synthetic smart-home world and its base model.", no_args_is_help=True)


@world_app.command("generate")
def world_generate(
    out_dir: Path = typer.Option(..., "--out", help="Folder for videos, scenes.jsonl, manifests and task YAMLs."),
    seed: int = typer.Option(0, "--seed", help="The same seed writes byte-identical files."),
    train: int = typer.Option(200, "--train", min=0, help="Labelled training clips."),
    val: int = typer.Option(60, "--val", min=0, help="Validation clips."),
    test: int = typer.Option(400, "--test", min=0, help="Test clips."),
    as_json: bool = typer.Option(False, "--json", help="Print the label counts as one JSON object."),
) -> None:
    """Draw the synthetic smart-home world as video files, scene records and one manifest per task."""
    from rbft.world.generate import Splits, generate_world

    splits = Splits(train, val, test)
    with one_bar(splits.total, "drawing clips") as advance:
        info = generate_world(out_dir, seed=seed, splits=splits, on_clip=advance)
    if as_json:
        print(json.dumps(info, sort_keys=True))
        return
    for task, by_split in info["labels"].items():
        names = sorted({name for counts in by_split.values() for name in counts})
        table = Table("split", *names, title=task)
        for split, counts in by_split.items():
            table.add_row(split, *(str(counts.get(name, 0)) for name in names))
        out.print(table)
    out.print(f"wrote {splits.total} clips to {escape(str(out_dir))}: manifests "
              + ", ".join(f"{t}.jsonl" for t in info["labels"]) + ", scenes.jsonl (ground truth with boxes)")
    first = next(iter(info["labels"]))
    out.print(f"next: rbft run {escape(str(out_dir / f'experiment-{first}.yaml'))} --only rationales")


@world_app.command("pretrain")
def world_pretrain(
    out_dir: Path = typer.Option(..., "--out", help="Folder for the new base model (a Hugging Face model folder)."),
    work: Optional[Path] = typer.Option(
        None, "--work", help="Folder for clips and checkpoints; a rerun resumes there (default: in the rbft cache)."
    ),
    clips: Optional[int] = typer.Option(None, "--clips", min=1, help="Pretraining clips (default: the recipe's)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01, help="Epochs (default: the recipe's)."),
    vision_warmup: Optional[float] = typer.Option(
        None, "--vision-warmup", min=0.0,
        help="Epochs (over every frame pair of the clips) of training the vision tower as a classifier of the "
        "clips' facts first (default: the recipe's)."
    ),
    vision_tower: Optional[Path] = typer.Option(
        None, "--vision-tower", help="Take this model folder's vision tower (frozen) instead of warming one up, "
        "as the shipped model took its predecessor's (see its card)."),
    copy_steps: Optional[int] = typer.Option(
        None, "--copy-steps", min=0, help="Steps of learning to copy, a sequence repeated on "
        "the next line (default: the recipe's)."),
    copy_far_steps: Optional[int] = typer.Option(
        None, "--copy-far-steps", min=0, help="Steps of learning to copy over gaps (default: the recipe's)."),
    refresh_quizzes: Optional[int] = typer.Option(
        None, "--refresh-quizzes", min=0, help="New label-hinted quizzes in the last pass (default: the recipe's)."),
) -> None:
    """Make the base model the way the shipped one was made: pretrain a tiny Qwen2-VL on world clips, what one
    knows about them, and made-up quizzes in rbft's rationale layout."""
    from dataclasses import replace

    from rbft.data.cache import default_cache_dir
    from rbft.basemodel.recipe import Recipe, pretrain

    recipe = Recipe()
    recipe = replace(recipe, clips=clips or recipe.clips, epochs=epochs or recipe.epochs,
                     warmup_epochs=recipe.warmup_epochs if vision_warmup is None else vision_warmup,
                     vision_tower=str(vision_tower.resolve()) if vision_tower else None,
                     **{k: v for k, v in (("copy_steps", copy_steps), ("copy_far_steps", copy_far_steps),
                                          ("refresh_quizzes", refresh_quizzes)) if v is not None})
    work = work or default_cache_dir() / "pretrain" / recipe.key()
    facts = pretrain(out_dir, work, recipe, log=lambda m: err.print(m))
    out.print(f"base model written to {escape(str(out_dir))} ({facts['parameters'] / 1e6:.1f}M parameters, "
              f"{facts['seconds']['training']:.0f} s of training, final loss {facts['final_loss']})")


def demo(
    out_dir: Path = typer.Option(Path("rbft-demo"), "--out", help="Folder for the world, the config and the run."),
    quick: bool = typer.Option(False, "--quick",
                               help="Fewer clips, one seed, no teacher arm: about 2 minutes on 2 cores."),
    study: bool = typer.Option(False, "--study", help="Add the label-budget curve (20 and 80 labelled clips): "
                               "about 6 minutes more on 2 cores; after `rbft demo` it trains only the curve's points."),
    write_config: Optional[Path] = typer.Option(
        None, "--write-config", help="Only draw the world and write the demo's config here, to edit and `rbft run`."),
) -> None:
    """The whole RB-FT experiment on the built-in smart-home world, offline on the CPU.

    Zero-shot vs direct SFT vs RB-FT with the shipped base model on `home-security`, 2 seeds
    (`--quick`: one), and the teacher arm: RB-FT on the world's ground-truth rationales
    (not in `--quick`); `--study` adds the label-budget curve. Printed with intervals; the
    run folder holds results.json, report.html, report.md and the attention figures. A
    re-run resumes where it stopped.
    """
    import time

    from rbft.config import load_config
    from rbft.demo import FULL, QUICK, STUDY, prepare
    from rbft.pipeline import run

    if quick and study:
        raise fail(RbftError("--quick and --study: choose one (the study needs the full demo's clips)"))
    size = QUICK if quick else STUDY if study else FULL
    started = time.perf_counter()
    config_path = write_config or out_dir / f"{size.name}.yaml"
    with one_bar(size.splits.total, "drawing the world") as tick:
        prepare(config_path, size, on_clip=lambda *_: tick())
    if write_config is not None:
        out.print(f"wrote {escape(str(write_config))} (and its world beside it); edit it, then "
                  f"`rbft run {escape(str(write_config))}`")
        return
    folder = out_dir / ("run-quick" if quick else "run")
    out.print(f"[bold]rbft {rbft.__version__} demo[/bold]{' (quick)' if quick else ' (study)' if study else ''}: "
              f"zero-shot vs direct SFT vs RB-FT on the built-in world, config {escape(str(config_path))}, "
              f"run folder {escape(str(folder))}")
    try:
        with bars() as progress:
            facts = run(load_config(config_path), folder, log=lambda m: err.print(escape(m)), progress=progress)
    except RbftError as e:
        raise fail(e) from None
    print_results(facts["results"], folder)
    out.print(f"demo finished in {time.perf_counter() - started:.0f} s")
