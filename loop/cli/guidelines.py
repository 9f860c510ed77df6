"""`loop guidelines`: show the labelling instructions in force, and bump them to a new version."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from loop.cli.output import JSON_OPTION, PROJECT_OPTION_HELP, console, context, emit, handle_errors

guidelines_app = typer.Typer(help="Versioned labelling guidelines: every label records the version it was made under.",
                             no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(guidelines_app, name="guidelines")

DIR_OPTION = typer.Option("guidelines", "--dir", help="The guidelines folder (vN.md files).")


@guidelines_app.command("show")
@handle_errors
def show(folder: str = DIR_OPTION,
         version: Optional[int] = typer.Option(None, help="A version to show (default: the newest, in force)."),
         as_json: bool = JSON_OPTION):
    """Print a guideline version: its labels with definitions, negatives and instructions."""
    from loop.labels.guidelines import get

    g = get(folder, version)
    data = {"version": g.version, "labels": g.labels, "negatives": g.negatives, "hash": g.content_hash,
            "path": str(g.path), "body": g.body}

    def render(d):
        console.print(f"[bold]Guidelines v{d['version']}[/] ({d['path']}, hash {d['hash']})")
        table = Table("label", "definition")
        for lab, definition in d["labels"].items():
            table.add_row(lab + (" (negative)" if lab in d["negatives"] else ""), definition)
        console.print(table)
        console.print(d["body"], markup=False, highlight=False)

    emit(data, as_json, render)


@guidelines_app.command("bump")
@handle_errors
def bump(edited: str = typer.Argument(..., help="An edited copy of the newest version (its version number is set for you)."),
         note: str = typer.Option(..., help="The changelog line: what changed and why."),
         folder: str = DIR_OPTION,
         project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
         no_project: bool = typer.Option(False, "--no-project", help="Only write the new version; touch no project."),
         as_json: bool = JSON_OPTION):
    """Write the next guideline version and put it in force: Label Studio's instructions and label
    config are updated, and new labels are stamped with the new version."""
    from loop.labels.guidelines import bump as write_version
    from loop.workflows.project import apply_guideline

    g = write_version(folder, edited, note)
    result = {"version": g.version, "path": str(g.path), "labels": list(g.labels), "project": None}
    if not no_project:
        ctx = context()
        result["project"] = apply_guideline(ctx, ctx.project_id(project), g.version)
    emit(result, as_json, lambda r: console.print(
        f"Guidelines v{r['version']} written to {r['path']}"
        + (f"; project {r['project']['project_id']} now uses it (was v{r['project']['previous_version']})"
           if r["project"] else "")))
