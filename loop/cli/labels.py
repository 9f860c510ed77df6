"""`loop adjudicate`, `loop agreement` and `loop aggregate`: contested items, how far annotators
agree, and several labels per item made into one."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from loop.cli.defaults import AGGREGATION_METHODS, DEFAULT_METHOD
from loop.cli.output import JSON_OPTION, PROJECT_OPTION_HELP, console, context, emit, handle_errors, reliability_table
from loop.errors import ConfigError

METHOD_HELP = ", ".join(AGGREGATION_METHODS)


def register(app: typer.Typer) -> None:
    app.command()(adjudicate)
    app.command()(accept)
    app.command()(agreement)
    app.command("aggregate")(aggregate)


@handle_errors
def adjudicate(
    adjudicator: str = typer.Option(..., help="Who decides contested items (a recorded annotator)."),
    limit: Optional[int] = typer.Option(None, help="At most this many new items (worst first)."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Send contested items (annotators disagree; most even split first) to an adjudicator, whose label is final."""
    from loop.workflows.adjudicate import assign

    ctx = context()
    r = assign(ctx, ctx.project_id(project), adjudicator, limit=limit)

    def render(r):
        where = f"their queue {r['url']}" if r["url"] else "their queue"
        console.print(f"{len(r['assigned'])} contested items sent to {r['adjudicator']}; "
                      f"{r['open_for_adjudicator']} now wait in {where} ({r['contested']} contested in all).")
        if r["skipped_own_items"]:
            console.print(f"{len(r['skipped_own_items'])} items were left out: {r['adjudicator']} labelled them.")
        table = Table("item", "labels", "top share", "adjudicator", title="contested queue (worst first)")
        for q in r["queue"][:20]:
            table.add_row(q["item_id"], ", ".join(f"{k} x{v}" for k, v in q["labels"].items()),
                          f"{q['top_share']:.0%}", q["adjudicator"] or "-")
        console.print(table)

    emit(r, as_json, render)


@handle_errors
def accept(
    annotation_ids: Optional[list[str]] = typer.Argument(None, help="Annotation ids to accept (`loop status --json` lists them under labels_outside)."),
    every: bool = typer.Option(False, "--all", help="Accept every label left out of training."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Take labels into training that were left out because their author was not sent the item
    (an item outside their queue, or someone else's queue)."""
    from loop.workflows.adjudicate import accept as run

    ctx = context()
    r = run(ctx, ctx.project_id(project), list(annotation_ids or []), every=every)
    emit(r, as_json, lambda r: console.print(
        f"{len(r['accepted'])} labels accepted into training; {r['still_outside']} are still left out."))


def _render_agreement(r: dict) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    console.print(f"[bold]Agreement[/] over {r['n_items']} items, {r['n_records']} labels, "
                  f"{r['n_annotators']} annotators")
    table = Table("measure", "value", "items it rests on")
    for name, key in (("percent agreement", "percent_agreement"), ("Krippendorff's alpha (nominal)", "krippendorff_alpha"),
                      ("Fleiss' kappa", "fleiss_kappa")):
        fig = r[key]
        table.add_row(name, fmt(fig["value"]) if fig["value"] is not None else f"- ({fig.get('reason', '')})",
                      str(fig.get("n_items", "-")))
    k = r["cohen_kappa"]
    table.add_row("Cohen's kappa, mean over pairs", fmt(k["mean"]), f"{k['n_defined']} of {k['n_pairs']} pairs")
    console.print(table)
    pairs = Table("annotators", "Cohen's kappa", "agreement", "shared items", title="per pair")
    for pr in k["pairs"]:
        pairs.add_row(" / ".join(map(str, pr["annotators"])), fmt(pr["kappa"]), fmt(pr.get("percent_agreement")),
                      str(pr["n_items"]))
    console.print(pairs)
    console.print(reliability_table(r["annotators"], f"annotators (consensus: {r['consensus_method']})"))
    est = r.get("consensus_accuracy") or {}
    if est.get("value") is not None:
        console.print(f"Consensus labels expected right: {est['value']:.1%} of {est['n_items']} items "
                      f"(about {est['expected_wrong']:.0f} wrong; the {r['consensus_method']} posterior)")
    if r["confusions"]:
        conf = Table("label pair", "annotator pairs split on it", "items", "share of disagreements",
                     title="most confused labels (a missing guideline rule?)")
        for c in r["confusions"][:10]:
            conf.add_row(" vs ".join(c["labels"]), str(c["pairs"]), str(c["items"]), f"{c['share']:.0%}")
        console.print(conf)
    for w in r["warnings"]:
        console.print(f"[bold yellow]Warning[/]: {w}")


@handle_errors
def agreement(
    round_id: Optional[int] = typer.Option(None, "--round", help="Only the items of this round."),
    guideline_version: Optional[int] = typer.Option(None, help="Only labels made under this guideline version."),
    annotations: Optional[str] = typer.Option(None, help="Measure a file of raw labels made elsewhere instead (JSONL, CSV, Parquet)."),
    item_field: str = typer.Option("item_id", help="With --annotations: the item id column."),
    annotator_field: str = typer.Option("annotator", help="With --annotations: the annotator column."),
    label_field: str = typer.Option("label", help="With --annotations: the label column."),
    method: str = typer.Option(DEFAULT_METHOD, help=f"Consensus for per-annotator figures: {METHOD_HELP}."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """How far annotators agree: percent agreement, Cohen's kappa per pair, Krippendorff's alpha, Fleiss'
    kappa where defined, per-annotator reliability and the label pairs they confuse most."""
    from loop.workflows.agreement import file_agreement, project_agreement

    if annotations:
        if round_id is not None or guideline_version is not None:
            raise ConfigError("--round and --guideline-version apply to the project's labels, not to --annotations")
        report = file_agreement(annotations, item_field=item_field, annotator_field=annotator_field,
                                label_field=label_field, method=method)
    else:
        ctx = context()
        report = project_agreement(ctx, ctx.project_id(project), round_id=round_id,
                                   guideline_version=guideline_version, method=method)
    emit(report, as_json, _render_agreement)


@handle_errors
def aggregate(
    annotations: str = typer.Argument(..., help="A file of raw labels: one row per (item, annotator, label)."),
    out: str = typer.Option(..., help="Where to write one label per item (.jsonl, .csv or .parquet)."),
    method: str = typer.Option(DEFAULT_METHOD, help=f"{METHOD_HELP}."),
    item_field: str = typer.Option("item_id", help="The item id column."),
    annotator_field: str = typer.Option("annotator", help="The annotator column."),
    label_field: str = typer.Option("label", help="The label column."),
    as_json: bool = JSON_OPTION,
):
    """Turn several labels per item into one, with its confidence and how it was decided."""
    from loop.workflows.agreement import aggregate_file

    summary = aggregate_file(annotations, out, method=method, item_field=item_field,
                             annotator_field=annotator_field, label_field=label_field)
    emit(summary, as_json, lambda s: console.print(
        f"{s['items']} items aggregated by {s['method']} into {s['out']}: "
        + ", ".join(f"{k} {v}" for k, v in s["decided_by"].items())))
