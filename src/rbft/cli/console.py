"""What every command prints with: the consoles, progress bars, user errors and the results' tables."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rbft.errors import RbftError

out = Console()
err = Console(stderr=True)


class bars:
    """Progress bars on stderr (stdout stays clean for --json), one per piece of work, made on demand:
    inside `with bars() as progress`, `progress(what, total)` adds a bar and returns its tick."""

    def __enter__(self):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=err, transient=True, disable=not sys.stderr.isatty())
        self.bar.start()

        def progress(what: str, total: int):
            task = self.bar.add_task(what, total=total)
            return lambda: self.bar.advance(task)

        return progress

    def __exit__(self, *exc) -> None:
        self.bar.stop()


@contextmanager
def one_bar(total: int, what: str):
    """One bar: yields its tick."""
    with bars() as progress:
        yield progress(what, total)


def fail(error: RbftError) -> typer.Exit:
    """Print a user error without a traceback; the caller raises the returned exit (status 2)."""
    err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)  # one line per line, for scripts
    return typer.Exit(2)


def print_results(results: dict, folder: Path) -> None:
    """The comparison (`rbft.results`' tables): each method's (and ablation's) accuracy and macro-F1, mean ± std
    over seeds with their 95% interval, then per-class F1 (one table split in two for a terminal's width), and
    RB-FT minus direct SFT with its interval and paired test."""
    from rbft.metrics import collapsed
    from rbft.results import (ablation_lines, budget_table, comparison_lines, focus_table, method_table,
                              representation_table)

    head, rows = method_table(results)
    split = next(i for i, h in enumerate(head) if h.startswith("F1 "))
    for columns, title in ((range(split), f"test set, {len(results['seeds'])} seed(s) "
                                          f"({escape(str(folder / 'results.json'))})"),
                           ((0, *range(split, len(head))), "per class (mean over seeds)")):
        print_table([head[i] for i in columns], [[row[i] for i in columns] for row in rows], title)
    if results.get("decisions"):
        out.print(f"decisions: {escape(results['decisions'])}")
    head, rows = representation_table(results)
    if rows:
        print_table(head, rows, "what each model represents: a linear probe on its features (test)")
    for warning in collapsed(results):
        out.print(f"[bold red]warning[/bold red]: {escape(warning)}")
    for line in comparison_lines(results, prefix="RB-FT minus direct SFT, ") + ablation_lines(results):
        out.print(escape(line))
    head, rows = budget_table(results)
    if rows:
        print_table(head, rows, "label budget (test macro-F1; the last row is the whole train split)")
    head, rows = focus_table(results)
    if rows:
        out.print("attention focus (share in the boxes / their area): " + ", ".join(f"{escape(k)} {v}" for k, v in rows))
    if (folder / "report.html").exists():
        out.print(f"report: {escape(str(folder / 'report.html'))}")


def print_table(head: list[str], rows: list[list[str]], title: str) -> None:
    table = Table(*map(escape, head), title=title)
    for row in rows:
        table.add_row(*map(escape, row))
    out.print(table)
