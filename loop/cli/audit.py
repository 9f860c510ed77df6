"""`loop audit start|report`: a blind second look at a random sample of final labels."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from loop.cli.output import JSON_OPTION, PROJECT_OPTION_HELP, console, context, emit, handle_errors

audit_app = typer.Typer(help="Audit finished labels: a second reviewer re-labels a random sample, blind to the "
                             "labels, and the sample says how good the whole set is.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("start")
@handle_errors
def start(
    auditor: str = typer.Option(..., help="Who re-labels the sample (a recorded annotator); never sent their own items."),
    sample: int = typer.Option(50, help="How many items to sample (all of them when fewer are final)."),
    round_id: Optional[int] = typer.Option(None, "--round", help="Sample only the items of this round."),
    release: Optional[str] = typer.Option(None, help="Sample a release's items (e.g. v2), with the labels it published."),
    stratify: Optional[str] = typer.Option(None, help="`label`: each label gets its share of the sample."),
    seed: Optional[int] = typer.Option(None, help="Seed of the draw (default: a random one, recorded)."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Draw a simple random sample of items whose label is final and send it, text only, to the
    auditor's own audit queue in Label Studio (tab "Audit · NAME": no label, no prediction shown).
    When they are done, `loop audit report`."""
    from loop.workflows.audit import start as run

    ctx = context()
    r = run(ctx, ctx.project_id(project), auditor, sample=sample, round_id=round_id, release=release,
            stratify=stratify, seed=seed)
    emit(r, as_json, lambda r: console.print(
        f"Audit {r['audit']}{' (resumed)' if r['resumed'] else ''}: {len(r['sample'])} of {r['population']} final "
        f"labels sampled (seed {r['seed']}{', stratified by ' + r['stratify'] if r['stratify'] else ''}) for "
        f"{r['auditor']}: {r['url']} (tab \"{r['tab']}\")"))


def _render_report(r: dict) -> None:
    console.print(f"[bold]Audit {r['audit']}[/] by {r['auditor']}: {r['n_answered']} of {r['n_sampled']} sampled "
                  f"items answered, from {r['population']} final labels")
    if r["verdict"] is None:
        console.print(r["summary"])
        return
    colour = "red" if r["verdict"] == "systemic" else "green"
    verdict, rest = r["summary"].split(": ", 1)  # the summary opens with the verdict
    console.print(f"[bold {colour}]{verdict}[/]: {rest}")
    for title, key in (("errors by label", "by_label"), ("errors by annotator", "by_annotator"),
                       ("errors by guideline version", "by_guideline_version")):
        table = Table(title.split(" by ")[1], "audited", "errors", "error rate", title=title)
        for row in r[key]:
            name = row["name"] if row["name"] is not None else "-"
            table.add_row(str(name), str(row["sampled"]), str(row["errors"]), f"{row['error_rate']:.0%}")
        console.print(table)
    if r["disagreements"]:
        console.print(f"{len(r['disagreements'])} disagreements wait for an adjudicator (the auditor's label never "
                      "replaces the final one by itself): `loop adjudicate --adjudicator NAME`")
    if not r["complete"]:
        console.print(f"{r['n_unanswered']} sampled items are not answered yet: run the report again when they are")


@audit_app.command("report")
@handle_errors
def report(
    audit_id: Optional[int] = typer.Option(None, "--audit", help="Which audit (default: the latest)."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    as_json: bool = JSON_OPTION,
):
    """Accuracy of the sampled labels with an exact 95% interval, errors by label, annotator and
    guideline version, and a verdict: more than 6% wrong is systemic (the label or annotator
    carrying it is named), fewer are individual errors. Disagreements go to adjudication."""
    from loop.workflows.audit import report as run

    ctx = context()
    emit(run(ctx, ctx.project_id(project), audit_id), as_json, _render_report)
