"""`loop up`, `loop down`, `loop ps`, `loop credentials` and `loop demo`: the local stack, its
logins, and the one-command demo."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from loop.cli.output import JSON_OPTION, console, context, emit, handle_errors, progress_bars
from loop.cli.rounds import render_round
from loop.errors import ConfigError, NotInitialised


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(ps)
    app.command("credentials")(show_credentials)
    app.command()(demo)


def _log(as_json: bool):
    return (lambda m: None) if as_json else (lambda m: console.print(f"• {m}"))


STATE_STYLE = {"healthy": "green", "starting": "yellow"}  # anything else (down, login refused, ...) is red


def _render_services(services) -> None:
    table = Table("service", "state", "pid", "url", "detail", title="loop stack")
    for s in services:
        state = s.state or ("healthy" if s.healthy else "starting" if s.running else "down")
        style = STATE_STYLE.get(state, "red")
        table.add_row(s.name, f"[{style}]{state}[/]" + ("" if s.managed else " (external)"), str(s.pid or "-"), s.url,
                      s.detail or "")
    console.print(table)


def admin_login_is_new(settings, kept_before: dict[str, Any]) -> bool:
    """Whether this `loop up` made the Label Studio admin's password: loop runs Label Studio and had
    kept no admin password before (`kept_before`: credentials.json as it was before `up`; other
    commands may have made the file already, for the Redis password). Only then does `up` print the
    password; afterwards `loop credentials` shows it."""
    return settings.embedded_label_studio and "password" not in kept_before


def login_line(settings, creds, new: bool) -> str:
    """What `loop up` says about logging in to Label Studio (never the password, unless `new`)."""
    if not settings.embedded_label_studio:
        return f"Label Studio: {settings.ls_url} (yours: log in with your own account)"
    if new:
        return (f"Label Studio: {settings.ls_url}  login {creds.username} / {creds.password} (made now, kept in "
                "the workspace; `loop credentials` shows it again)")
    return f"Label Studio: {settings.ls_url}  login {creds.username}; run `loop credentials` to see the logins"


@handle_errors
def up(
    label_studio_db: str = typer.Option(
        None, "--label-studio-db", metavar="sqlite|postgres",
        help="Label Studio's database (LOOP_LABEL_STUDIO_DB): sqlite (default), or postgres, a PostgreSQL server "
             "`up` runs too (Debian's `postgresql` package). Chosen on the first start and kept by the workspace."),
    as_json: bool = JSON_OPTION,
):
    """Start the local stack (embedded Redis, Label Studio, ML backend) in the workspace; harmless twice.
    Prints the Label Studio admin's password on the first start only (`loop credentials` shows it later)."""
    from loop.services import stack
    from loop.services.settings import load_settings
    from loop.services.workspace import credentials, kept_secrets

    settings = load_settings(label_studio_db=label_studio_db)
    new = admin_login_is_new(settings, kept_secrets(settings))  # read before `up` keeps anything
    services = stack.up(settings, log=_log(as_json))
    emit([vars(s) for s in services], as_json, lambda _: (
        _render_services(services),
        console.print(login_line(settings, credentials(settings) if settings.embedded_label_studio else None, new))))


def logins(settings) -> dict[str, Any]:
    """The logins of the stack these settings name: Label Studio's admin (e-mail, password, API token)
    and the ML backend's basic-auth login. Reads what `loop up` kept; generates nothing."""
    from loop.services.workspace import Workspace, credentials, kept_secrets

    path = Workspace(settings).credentials_file
    kept = kept_secrets(settings)  # with nothing wanted, it only reads
    label_studio: dict[str, Any] = {"url": settings.ls_url, "run_by_loop": settings.embedded_label_studio}
    if settings.embedded_label_studio:
        if "password" not in kept:
            raise NotInitialised(f"no Label Studio login kept in {path} yet; `loop up` makes it on its first start")
        creds = credentials(settings)  # the kept login (or the one the settings name): nothing new is made
        label_studio |= {"email": creds.username, "password": creds.password, "token": creds.token}
    else:  # someone else's Label Studio: only what the settings say
        label_studio |= {"email": settings.label_studio_username if settings.label_studio_password else None,
                         "password": settings.label_studio_password or None,
                         "token": settings.label_studio_token or None}
    return {"label_studio": label_studio, "ml_backend": _backend_login(settings, kept), "credentials_file": str(path)}


def _backend_login(settings, kept: dict[str, Any]) -> dict[str, Any]:
    from loop.services.workspace import backend_login

    out: dict[str, Any] = {"url": settings.backend_url, "user": None, "password": None, "note": None}
    generated = not (settings.backend_auth or settings.ml_backend_url or settings.ml_backend_auth == "off")
    if generated and "ml_backend_password" not in kept:
        return out | {"note": "none kept yet: `loop up` makes it"}
    try:
        login = backend_login(settings)  # the settings' login, or the kept one: nothing new is made
    except ConfigError as exc:
        return out | {"note": str(exc)}
    if login is None:
        return out | {"note": "none (LOOP_ML_BACKEND_AUTH=off): it answers anyone who reaches its port"}
    return out | {"user": login[0], "password": login[1]}


def _render_logins(d: dict[str, Any]) -> None:
    ls, backend = d["label_studio"], d["ml_backend"]
    table = Table("service", "what", title="loop logins")
    table.add_column("value", overflow="fold")  # a secret is folded onto the next line, never cut short
    table.add_row("Label Studio", "url", ls["url"] + ("" if ls["run_by_loop"] else " (yours)"))
    table.add_row("", "admin e-mail", ls["email"] or "-")
    table.add_row("", "password", ls["password"] or "- (LABEL_STUDIO_PASSWORD is not set)")
    table.add_row("", "API token", ls["token"] or "- (LABEL_STUDIO_USER_TOKEN is not set)")
    table.add_row("ML backend", "url", backend["url"])
    if backend["user"]:
        table.add_row("", "user", backend["user"])
        table.add_row("", "password", backend["password"])
    else:
        table.add_row("", "login", backend["note"] or "-")
    console.print(table)
    console.print(f"Kept in {d['credentials_file']}. Annotators' passwords are shown once, "
                  "by `loop annotators add`.", highlight=False)


@handle_errors
def show_credentials(as_json: bool = JSON_OPTION):
    """Show the local stack's logins: Label Studio's admin e-mail, password and API token, and the
    ML backend's login. They are secrets: mind where you paste them."""
    from loop.services.settings import load_settings

    emit(logins(load_settings()), as_json, _render_logins)


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
            "[bold]Next[/]: log in as an annotator, open your queue (the project \"<title> · name\", link above) "
            "and click \"Label All Tasks\";\n"
            "then run `loop status` to watch progress and `loop next-round --annotators alice,bob,carol` "
            "for round 2.\n`loop down` stops the stack; its data stays in .loop/.")

    emit(result, as_json, render)
