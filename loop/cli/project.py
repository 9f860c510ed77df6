"""`loop init`: a Label Studio project from a dataset file, every item embedded once."""

from __future__ import annotations

from typing import Optional

import typer

from loop.cli.output import JSON_OPTION, console, context, csv_option, emit, handle_errors, progress_bars
from loop.core.dataset import long_text_warning


def register(app: typer.Typer) -> None:
    app.command()(init)


@handle_errors
def init(
    data: str = typer.Argument(..., help="The items to label: a .jsonl, .csv or .parquet file."),
    text_field: str = typer.Option("text", help="Column holding the text to label."),
    label_field: Optional[str] = typer.Option(None, help="Column holding known labels, if any (checked against the label set)."),
    id_field: Optional[str] = typer.Option(None, help="Column holding stable item ids (default: `id` if present, else a content hash)."),
    labels: Optional[str] = typer.Option(None, help="The label set, comma-separated: A,B,C."),
    guidelines: Optional[str] = typer.Option(None, help="A guidelines folder: its newest version gives the labels and the instructions."),
    project_id: Optional[int] = typer.Option(None, help="Link an existing Label Studio project instead of creating one."),
    title: Optional[str] = typer.Option(None, help="Title of the new Label Studio project."),
    dev: Optional[str] = typer.Option(None, help="A labelled dev set (same format) to track held-out accuracy and macro-F1 per round."),
    assisted: Optional[bool] = typer.Option(None, "--assisted/--independent", help="Show annotators the model's answer pre-ticked (one annotator per item only), or not (the default: independent labels)."),
    engine: Optional[str] = typer.Option(None, help="Where to embed: `local` (this process) or `ray` (the Ray cluster at LOOP_RAY_ADDRESS, `pip install 'loop-al[ray]'`); default: ray when LOOP_RAY_ADDRESS is set, else local."),
    as_json: bool = JSON_OPTION,
):
    """Create (or link) a Label Studio project from a dataset, embed every item once, connect the ML backend."""
    from loop.workflows.project import init_project

    ctx = context()
    with progress_bars(not as_json) as bars:
        result = init_project(ctx, data, text_field=text_field, label_field=label_field, id_field=id_field,
                              labels=csv_option(labels) or None, guidelines_dir=guidelines, project_id=project_id,
                              title=title, dev=dev, assisted=assisted, progress=bars, engine=engine)
    emit(result, as_json, render_init)


def render_init(r: dict) -> None:
    console.print(f"Project {r['project_id']} {'linked' if r['linked'] else 'created'}: {r['items']} items "
                  f"({r['imported']} imported, {r['embedded']} newly embedded), labels {', '.join(r['labels'])}.\n"
                  f"Open {r['url']}; next: `loop annotators add NAME`, then `loop next-round`.")
    warning = long_text_warning(r.get("long_texts") or {})
    if warning:
        console.print(f"[bold yellow]Warning[/]: {warning}", highlight=False)
