"""`loop gold add|promote|list`: a gold set kept apart, the project's evaluation set."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from loop.cli.output import JSON_OPTION, PROJECT_OPTION_HELP, console, context, emit, handle_errors

gold_app = typer.Typer(help="A gold set kept apart: items with trusted labels that are never chosen, never trained "
                            "on, and score each round's model and (as control items) each annotator.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(gold_app, name="gold")


@gold_app.command("add")
@handle_errors
def add(
    data: str = typer.Argument(..., help="JSONL, CSV or Parquet file of items with trusted labels."),
    text_field: str = typer.Option("text", help="Field holding the text."),
    label_field: str = typer.Option("label", help="Field holding the trusted label (one of the project's labels)."),
    id_field: Optional[str] = typer.Option(None, help="Field holding the item id (default: `id` if present, else a hash of the text)."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Make a file's items gold with their label: items of the project (same id or same text) become
    gold; new ones are added to the project first. Every row is checked before anything is written."""
    from loop.workflows.gold import add_gold

    ctx = context()
    r = add_gold(ctx, ctx.project_id(project), data, text_field=text_field, label_field=label_field, id_field=id_field)
    def render(r):
        console.print(f"{r['rows']} rows of {r['source']}: {r['added']} items made gold ({r['existing_items']} already "
                      f"in the project, {r['new_items']} added to it), {r['relabelled']} gold labels changed, "
                      f"{r['unchanged']} unchanged; {r['gold']} gold items in all."
                      + (f" {r['no_longer_trained_on']} of them had labels that models will no longer learn from."
                         if r["no_longer_trained_on"] else ""))
        for warning in r["warnings"]:
            console.print(f"[bold yellow]Warning[/]: {warning}")

    emit(r, as_json, render)


@gold_app.command("promote")
@handle_errors
def promote(
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Make adjudicated items gold, with their adjudicator's ruling."""
    from loop.workflows.gold import promote as run

    ctx = context()
    r = run(ctx, ctx.project_id(project))
    emit(r, as_json, lambda r: console.print(
        f"{r['promoted']} adjudicated items made gold ({r['already_gold']} were already); {r['gold']} gold items in all."))


@gold_app.command("list")
@handle_errors
def list_gold(
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """How many gold items, per label and per source (--json lists every item)."""
    from loop.workflows.gold import summary

    ctx = context()
    r = summary(ctx.store, ctx.project_id(project))

    def render(r):
        console.print(f"{r['count']} gold items; sources: "
                      + (", ".join(f"{s} ({n})" for s, n in r["sources"].items()) or "none"))
        table = Table("label", "gold items")
        for lab, n in r["per_label"].items():
            table.add_row(lab, str(n))
        console.print(table)

    emit(r, as_json, render)
