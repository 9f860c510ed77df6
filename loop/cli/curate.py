"""`loop validate` and `loop export`: check a dataset before anyone trains on it, then ship it with a card."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from loop.cli.defaults import MIN_CHARS, MINORITY_FRACTION, NEAR_THRESHOLD
from loop.cli.output import (
    JSON_OPTION,
    PROJECT_OPTION_HELP,
    console,
    context,
    csv_option,
    emit,
    err_console,
    handle_errors,
    progress_bars,
)

# Exit code when the data has a release blocker (1 stays "the command failed").
BLOCKED = 2

STATUS_STYLE = {"ok": "[green]ok[/]", "found": "[bold yellow]found[/]", "skipped": "[dim]skipped[/]"}


def _examples(name: str, check: dict[str, Any], show: int) -> list[str]:
    """A few readable lines per finding; the JSON has every row."""
    if name == "contradictions":
        return [f"{g['text'][:70]!r}: " + "; ".join(f"{lab} ({', '.join(map(str, ids))})" for lab, ids in g["labels"].items())
                for g in check.get("groups", [])[:show]]
    if name == "exact_duplicates":
        return [f"{g['text'][:70]!r} [{g['label']}]: {', '.join(map(str, g['ids']))}" for g in check.get("groups", [])[:show]]
    if name == "near_duplicates":
        return [f"{p['a']} ~ {p['b']} cos {p['similarity']:.3f}: "
                + (p["label_a"] if p["same_label"] else f"{p['label_a']} vs {p['label_b']} (labels differ)")
                for p in check.get("pairs", [])[:show]]
    if name == "invalid_labels":
        return [f"{r['id']}: {r['label']!r}" for r in check.get("rows", [])[:show]]
    if name == "empty_inputs":
        return [f"{r['id']}: {r['text']!r}" for r in check.get("rows", [])[:show]]
    if name == "class_balance":
        lines = [f"under {check.get('minority_fraction', MINORITY_FRACTION):.0%} of the largest class: "
                 + ", ".join(f"{lab} ({check['counts'][lab]})" for lab in check.get("minority", []))] \
            if check.get("minority") else []
        ref = check.get("reference")
        if ref:
            lines.append(f"against the reference: KL {ref['kl_divergence']:.4f}, chi-square {ref['chi_square']:.1f}, "
                         f"p = {ref['p_value']:.3g}")
        return lines
    if name == "missing_negatives":
        return [f"no example of {', '.join(check['missing'])}"] if check.get("missing") else []
    if name == "leakage":
        lines = [f"{', '.join(map(str, e['train_ids']))} = test {', '.join(map(str, e['test_ids']))}: {e['text'][:60]!r}"
                 + (" (labels differ)" if e.get("conflicting") else "") for e in check.get("exact", [])[:show]]
        lines += [f"{n['train']} ~ test {n['test']} cos {n['similarity']:.3f}" for n in check.get("near", [])[:show]]
        return lines
    if name == "label_errors":
        return [f"{r['id']}: labelled {r['label']} ({r['label_probability']:.2f}), model says {r['suggested']} "
                f"({r['suggested_probability']:.2f})" for r in check.get("rows", [])[:show]]
    return []


def render_report(report: dict[str, Any], show: int) -> None:
    test = f", {report['n_test']} test items" if report.get("n_test") is not None else ""
    console.print(f"[bold]Validated {report['n_items']} items[/] ({report['n_labelled']} labelled{test}); "
                  f"near-duplicates at cosine >= {report['settings']['near_threshold']}; "
                  f"inputs compared after {report['settings']['normalisation']}")
    table = Table("check", "result", "count", "severity")
    for name, check in report["checks"].items():
        result = STATUS_STYLE[check["status"]] + (f" ({check['reason']})" if check["status"] == "skipped" else "")
        table.add_row(name.replace("_", " "), result, str(check["count"]), check["severity"])
    console.print(table)
    for name, check in report["checks"].items():
        lines = _examples(name, check, show) if check["status"] == "found" else []
        if not lines:
            continue
        console.print(f"[bold]{name.replace('_', ' ')}[/] ({check['count']})")
        for line in lines:
            console.print(f"  {line}", markup=False, highlight=False)
        listed = len(lines) if name not in ("class_balance", "missing_negatives") else check["count"]
        if check["count"] > listed:
            console.print(f"  … {check['count'] - listed} more (--show N, or --json for every row)")
    shift = report.get("shift")
    if shift:  # --reference was a file of texts: the embeddings' shift against it (`workflows.coverage`)
        t = shift["test"]
        said = (f"not tested ({t['reason']})" if t["status"] != "done" else
                f"{'SHIFT' if t['shift'] else 'no shift'} (MMD permutation test, p = {t['p_value']:.3g}, alpha {t['alpha']})")
        console.print(f"[bold]shift[/] against {shift['reference']}: {said}; cluster shares differ by "
                      f"{shift['total_variation']:.0%} over {shift['k']} clusters", highlight=False)
        for c in shift["clusters"][:show]:
            console.print(f"  {', '.join(c.get('terms') or []) or 'cluster ' + str(c['cluster'])}: "
                          f"{c['share_b']:.1%} of the reference, {c['share_a']:.1%} of the data", markup=False,
                          highlight=False)
    if report["blockers"]:
        console.print(f"[bold red]Release blocker[/]: {', '.join(report['blockers'])}. The same input carries "
                      "different labels; adjudicate or fix them before training or export.")
    else:
        console.print("[bold green]No release blocker.[/] Review the findings above before training.")


NO_SYNC_OPTION = typer.Option(False, "--no-sync", help="Use the labels stored at the last sync; do not ask Label Studio (e.g. when it is down).")


def _sync(ctx, p: int, no_sync: bool) -> None:
    """Bring the project's labels up to date from Label Studio first, unless told not to."""
    from loop.errors import LoopError
    from loop.services.sync import sync_annotations

    if no_sync:
        return
    try:
        sync_annotations(ctx.store, ctx.ls, p)
    except LoopError as exc:
        raise type(exc)(f"{exc} (to work from the labels stored at the last sync, add --no-sync)") from None


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(export)


@handle_errors
def validate(
    data: Optional[str] = typer.Argument(None, help="A dataset file (.jsonl, .csv, .parquet). Default: the project's labelled data."),
    test: Optional[str] = typer.Option(None, help="A held-out file to check for train/test leakage."),
    text_field: str = typer.Option("text", help="Column holding the input text."),
    label_field: str = typer.Option("label", help="Column holding the label."),
    id_field: Optional[str] = typer.Option(None, help="Column holding row ids (default: `id` if present, else row-N)."),
    labels: Optional[str] = typer.Option(None, help="The allowed label set, A,B,C (default: the project's, or --guidelines')."),
    guidelines: Optional[str] = typer.Option(None, help="A guidelines folder: its newest version gives the label set and the negatives."),
    near_threshold: float = typer.Option(NEAR_THRESHOLD, help="Cosine similarity from which two inputs are near-duplicates."),
    minority_fraction: float = typer.Option(MINORITY_FRACTION, help="Flag classes with fewer items than this fraction of the largest."),
    min_chars: int = typer.Option(MIN_CHARS, help="Inputs with fewer non-space characters (or no letter or digit) are near-empty."),
    reference: Optional[str] = typer.Option(None, help="A reference to test against: a label distribution (JSON {label: count}, or CSV/JSONL label,count), or a file of texts (production, an older release's train file) whose embeddings are tested for shift and whose labels, if any, give the balance."),
    label_errors: bool = typer.Option(True, "--label-errors/--no-label-errors", help="Look for likely label errors with a cross-validated classifier."),
    project: Optional[int] = typer.Option(None, help="Project to validate when no file is given (default: the last one `loop init` set up)."),
    no_sync: bool = NO_SYNC_OPTION,
    show: int = typer.Option(5, help="Examples shown per finding (--json has them all)."),
    as_json: bool = JSON_OPTION,
):
    """Check labelled data for contradictions, duplicates, near-duplicates, invalid labels, empty
    inputs, class balance, missing negatives, train/test leakage and likely label errors.

    Exits 2 when a release blocker is found (the same input with different labels), 1 on an error.
    """
    from loop.workflows.curate import validate_file, validate_project

    ctx = context()
    options = dict(near_threshold=near_threshold, minority_fraction=minority_fraction, min_chars=min_chars,
                   reference=reference, label_errors=label_errors)
    with progress_bars(not as_json) as bars:
        if data is None:
            p = ctx.project_id(project)
            _sync(ctx, p, no_sync)
            report = validate_project(ctx, p, test=test, text_field=text_field,
                                      label_field=label_field, id_field=id_field, progress=bars, **options)
        else:
            report = validate_file(ctx, data, test=test, text_field=text_field, label_field=label_field,
                                   id_field=id_field, labels=csv_option(labels) or None, guidelines=guidelines,
                                   progress=bars, **options)
    emit(report, as_json, lambda r: render_report(r, show))
    if report["blockers"]:
        raise typer.Exit(BLOCKED)


@handle_errors
def export(
    out_dir: str = typer.Argument(..., help="Folder to write the dataset, its data card (README.md) and learning curve into."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, csv, parquet, or hf (a Hugging Face `datasets` folder)."),
    test_size: float = typer.Option(0.2, help="Share of items in the test split (split by duplicate cluster)."),
    seed: int = typer.Option(0, help="Seed of the split and the label-error check."),
    with_annotations: bool = typer.Option(False, "--with-annotations", help="Add every annotator's raw label to each row."),
    allow_contradictions: bool = typer.Option(False, "--allow-contradictions",
                                              help="Export even when identical inputs carry different labels (the card says so)."),
    near_threshold: float = typer.Option(NEAR_THRESHOLD, help="Cosine similarity from which items share a duplicate cluster."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    no_sync: bool = NO_SYNC_OPTION,
    as_json: bool = JSON_OPTION,
):
    """Write the curated dataset (one row per item: aggregated label, how it was decided, label count,
    guideline version, round) split into train/test, with a data card built from the loop's records."""
    from loop.workflows.curate import export_project

    ctx = context()
    p = ctx.project_id(project)
    _sync(ctx, p, no_sync)
    with progress_bars(not as_json) as bars:
        result = export_project(ctx, p, out_dir, fmt=fmt, test_size=test_size, seed=seed,
                                with_annotations=with_annotations, allow_contradictions=allow_contradictions,
                                near_threshold=near_threshold, progress=bars)

    def render(r):
        sizes = ", ".join(f"{name} {n}" for name, n in r["splits"].items())
        console.print(f"Exported {r['rows']} items of project {r['project_id']} to {r['out_dir']} ({r['format']}): "
                      f"{sizes}, {r['clusters']} duplicate clusters kept whole")
        for what, path in r["files"].items():
            console.print(f"  {what:<15} {path}")
        if r["contradictions"]:
            err_console.print(f"[bold yellow]Warning[/]: exported with {r['contradictions']} contradictions "
                              "(--allow-contradictions); the data card records it")

    emit(result, as_json, render)
