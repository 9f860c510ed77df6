"""`loop up`, `loop down`, `loop ps` and `loop demo`: the local stack and the one-command demo."""

from __future__ import annotations

import typer
from rich.table import Table

from loop.cli.output import JSON_OPTION, console, context, emit, handle_errors, progress_bars
from loop.cli.rounds import render_round


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(ps)
    app.command()(demo)


def _log(as_json: bool):
    return (lambda m: None) if as_json else (lambda m: console.print(f"• {m}"))


def _render_services(services) -> None:
    table = Table("service", "state", "pid", "url", title="loop stack")
    for s in services:
        state = "[green]healthy[/]" if s.healthy else ("[yellow]starting[/]" if s.running else "[red]down[/]")
        table.add_row(s.name, state + ("" if s.managed else " (external)"), str(s.pid or "-"), s.url)
    console.print(table)


@handle_errors
def up(as_json: bool = JSON_OPTION):
    """Start the local stack (embedded Redis, Label Studio, ML backend) in the workspace; harmless twice."""
    from loop.services import stack
    from loop.services.settings import load_settings
    from loop.services.workspace import credentials

    settings = load_settings()
    services = stack.up(settings, log=_log(as_json))
    creds = credentials(settings)
    emit([vars(s) for s in services], as_json, lambda _: (
        _render_services(services),
        console.print(f"Label Studio: {settings.ls_url}  login {creds.username} / {creds.password}")))


@handle_errors
def down(as_json: bool = JSON_OPTION):
    """Stop exactly the services `loop up` started (their data stays in the workspace)."""
    from loop.services import stack
    from loop.services.settings import load_settings

    stopped = stack.down(load_settings(), log=_log(as_json))
    if as_json:
        emit({"stopped": stopped}, True, print)


@handle_errors
def ps(as_json: bool = JSON_OPTION):
    """Show each service of the stack and whether it is healthy."""
    from loop.services import stack
    from loop.services.settings import load_settings

    services = stack.ps(load_settings())
    emit([vars(s) for s in services], as_json, lambda _: _render_services(services))
    if not all(s.healthy for s in services):
        raise typer.Exit(1)


@handle_errors
def demo(
    data: str = typer.Option("examples/support_tickets.jsonl", help="The sample dataset."),
    guidelines: str = typer.Option("guidelines", help="The sample's guidelines folder."),
    size: int = typer.Option(20, help="Items in round 1."),
    as_json: bool = JSON_OPTION,
):
    """Bring up the stack, create a demo project from the bundled sample and run round 1."""
    from loop.workflows.demo import run_demo

    ctx = context()
    with progress_bars(not as_json) as bars:
        result = run_demo(ctx, data, guidelines, size=size, log=_log(as_json), progress=bars)

    def render(r):
        render_round(r["round"])
        people = "\n".join(f"  {n:<6} {v['email']:<18} password {v['password']}" for n, v in r["annotators"].items())
        console.print(
            f"\n[bold]Label Studio[/]: {r['url']}\n"
            f"  admin  {r['admin']['email']:<18} password {r['admin']['password']}\n{people}\n\n"
            "[bold]Next[/]: log in as an annotator, open your \"Round 1 · name\" tab and label its items;\n"
            "then run `loop status` to watch progress and `loop next-round --annotators alice,bob,carol` "
            "for round 2.\n`loop down` stops the stack; its data stays in .loop/.")

    emit(result, as_json, render)
