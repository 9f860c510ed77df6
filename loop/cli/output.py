"""What every command module shares: the table-or-JSON decision, LoopErrors as one line, progress
bars, the context, and comma-separated options."""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from loop.errors import LoopError


def context():
    """The services a command needs, from the settings (built lazily: a bad option fails first)."""
    from loop.services.context import Context
    from loop.services.settings import load_settings

    return Context(load_settings())


def csv_option(value: str | None) -> list[str]:
    """`a,b, c` -> ["a", "b", "c"]."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


PROJECT_OPTION_HELP = "Project id (default: the last one `loop init` set up)."

console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def fail(message: str) -> None:
    # escape: a message is text, and "[...]" in it (pip install 'loop-al[ray]') is no markup
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def handle_errors(fn: Callable) -> Callable:
    """Library errors become one 'Error: ...' line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LoopError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted; what was saved is kept, re-run the command to continue")

    return wrapper


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        render(data)


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Yields `start(description, total) -> advance(n)`; quiet when disabled (e.g. with --json), and
    until the first bar starts."""
    if not enabled:
        yield lambda description, total: (lambda n: None)
        return
    bars: Progress | None = None  # shown from the first bar on: a command that fails first prints only its error

    def start(description: str, total: int) -> Callable[[int], None]:
        nonlocal bars
        if bars is None:
            bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=err_console, transient=False)
            bars.start()
        task = bars.add_task(description, total=total)
        return lambda n: bars.advance(task, n)

    try:
        yield start
    finally:
        if bars is not None:
            bars.stop()


def reliability_table(annotators: dict, title: str):
    """Each annotator's estimated accuracy, its 95% interval, the labels it rests on and flags
    (`labels.aggregation.annotator_reliability`), as `loop agreement` and `loop status` show it."""
    from rich.table import Table

    pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    gold = any(a.get("gold_n") for a in annotators.values())  # `loop status`: answers on control items
    table = Table("annotator", "labels", "agreement with consensus", "estimated accuracy", "95% interval",
                  "rests on", "flags", *(["measured on gold (95% interval)"] if gold else []), title=title)
    for name, a in sorted(annotators.items(), key=lambda kv: str(kv[0])):
        low_high = a.get("accuracy_interval")
        measured = [] if not gold else ["-"] if not a.get("gold_n") else [
            f"{a['gold_accuracy']:.0%} of {a['gold_n']} ({a['gold_interval'][0]:.0%}-{a['gold_interval'][1]:.0%})"]
        table.add_row(str(name), str(a.get("n_labels", a["n"])), pct(a["agreement_with_consensus"]),
                      pct(a["estimated_accuracy"]), "-" if not low_high else f"{low_high[0]:.0%}-{low_high[1]:.0%}",
                      f"{a.get('n_evidence', 0)} labels", ", ".join(a.get("flags") or []) or "-", *measured)
    return table
