"""`loop annotators add|list`: the people who label, each a Label Studio user who can log in."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from loop.cli.output import JSON_OPTION, console, context, emit, handle_errors

annotators_app = typer.Typer(help="Manage the people who label: each is a Label Studio user who can log in.",
                             no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(annotators_app, name="annotators")


@annotators_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="Short name used in rounds, e.g. alice."),
    email: Optional[str] = typer.Option(None, help="Login e-mail (default NAME@loop.local)."),
    password: Optional[str] = typer.Option(None, help="Login password, 8+ characters (default: generated and printed once)."),
    as_json: bool = JSON_OPTION,
):
    """Create a Label Studio user who can log in, and record them as an annotator."""
    from loop.workflows.annotators import add_annotator

    rec = add_annotator(context(), name, email=email, password=password)
    emit(rec, as_json, lambda r: console.print(
        f"Annotator {r['name']}: log in as {r['email']}"
        + (f" with password {r['password']}" if r["password"] else " (existing Label Studio user)")))


@annotators_app.command("list")
@handle_errors
def list_annotators(as_json: bool = JSON_OPTION):
    """List the recorded annotators."""
    people = sorted(context().store.annotators().values(), key=lambda a: a["name"])

    def render(rows):
        table = Table("name", "email", "Label Studio user id")
        for a in rows:
            table.add_row(a["name"], a["email"], str(a["ls_user_id"]))
        console.print(table)

    emit(people, as_json, render)
