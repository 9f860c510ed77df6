"""`loop predictions push|prune`: the current model's scores in Label Studio, in bulk; old ones removed."""

from __future__ import annotations

from typing import Optional

import typer

from loop.cli.output import JSON_OPTION, PROJECT_OPTION_HELP, console, context, emit, handle_errors

predictions_app = typer.Typer(help="Model predictions in Label Studio: push the current model's scores, prune old ones.",
                              no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(predictions_app, name="predictions")


@predictions_app.command("push")
@handle_errors
def push(
    include_labelled: bool = typer.Option(False, "--include-labelled", help="Score labelled items too."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    engine: Optional[str] = typer.Option(None, help="Where to score the pool: `local` (this process) or `ray` (the Ray cluster at LOOP_RAY_ADDRESS, `pip install 'loop-al[ray]'`); default: ray when LOOP_RAY_ADDRESS is set, else local."),
    as_json: bool = JSON_OPTION,
):
    """Score every unlabelled task with the current model and send the predictions to Label Studio in bulk."""
    from loop.workflows.predictions import push as run

    ctx = context()
    r = run(ctx, ctx.project_id(project), include_labelled=include_labelled, engine=engine)
    emit(r, as_json, lambda r: console.print(f"{r['pushed']} predictions of model {r['model_version']} pushed "
                                             f"in {r['seconds']} s ({r['already_there']} were there already)."))


@predictions_app.command("prune")
@handle_errors
def prune(
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Delete predictions of older model versions, so Label Studio's score column reflects the current model."""
    from loop.workflows.predictions import prune as run

    ctx = context()
    r = run(ctx, ctx.project_id(project))
    emit(r, as_json, lambda r: console.print(f"{r['deleted']} predictions of older models deleted; "
                                             f"model {r['model_version']} remains."))
