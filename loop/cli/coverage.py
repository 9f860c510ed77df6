"""`loop coverage`: which regions of the data the labels cover, which production sends that they miss,
how far the labelled set has drifted from production, and where the model errs."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from loop.cli.curate import NO_SYNC_OPTION, _sync
from loop.cli.output import JSON_OPTION, PROJECT_OPTION_HELP, console, context, emit, handle_errors, progress_bars


def register(app: typer.Typer) -> None:
    app.command()(coverage)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _name(row: dict[str, Any]) -> str:
    return ", ".join(row.get("terms", [])[:3]) or "-"


def render(r: dict[str, Any], show: int) -> None:
    where = "production" if r["production"] is not None else "the pool"
    console.print(f"[bold]Coverage of {r['source']}[/]: {r['pool']} pool items"
                  + (f", {r['production']} production items ({r['production_source']})" if r["production"] is not None
                     else " (no production sample: the pool stands for traffic; --production FILE)")
                  + f", {r['labelled']} labelled; {r['k']} clusters ({r['k_rule']})", highlight=False)
    console.print(r["summary_line"], markup=False, highlight=False)
    rows = {c["cluster"]: c for c in r["clusters"]}
    traffic = "production" if r["production"] is not None else "pool"
    table = Table("cluster", "top terms", "pool", "production", "labelled", "labelled share", f"{traffic} share",
                  "label mix", "negatives", "agreement", "model accuracy",
                  title=f"The {min(show, r['k'])} busiest clusters (--show N; --json has all {r['k']})")
    busiest = sorted(r["clusters"], key=lambda c: -(c["production"] if c["production"] is not None else c["pool"]))
    for c in busiest[:show]:
        mix = ", ".join(f"{lab} {n}" for lab, n in list(c["label_mix"].items())[:3]) or "-"
        table.add_row(str(c["cluster"]), _name(c), str(c["pool"]), "-" if c["production"] is None else str(c["production"]),
                      str(c["labelled"]), _pct(c["labelled_share"]),
                      _pct(c["production_share"] if c["production_share"] is not None else c["pool_share"]), mix,
                      "-" if c["negatives"] is None else str(c["negatives"]),
                      "-" if c["agreement"] is None else f"{c['agreement']:.0%} ({c['agreement_items']})",
                      "-" if c["accuracy"] is None else f"{c['accuracy']:.0%} ({c['eval_items']})")
    console.print(table)

    flags, th = r["flags"], r["thresholds"]
    under = flags["under_covered"]
    console.print(f"[bold]Under-labelled[/] ({len(under)}): {where} sends at least {th['min_traffic_share']:.1%} "
                  f"and {th['min_traffic_items']} items, the labels hold under {th['under_ratio']:.0%} of that share; "
                  "biggest gap first", highlight=False)
    for f in under[:show]:
        c = rows[f["cluster"]]
        console.print(f"  cluster {f['cluster']} ({_name(c)}): {_pct(f['traffic_share'])} of {where}, "
                      f"{_pct(f['labelled_share'])} of labels ({f['labelled']}); about {f['labels_to_match']} more "
                      "labels to match", markup=False, highlight=False)
        for text in c.get("examples", [])[:3]:
            console.print(f"      {text!r}", markup=False, highlight=False)
    neg = flags["no_negative"]
    if neg["status"] == "skipped":
        console.print(f"[bold]No negative example[/]: skipped ({neg['reason']})", highlight=False)
    else:
        console.print(f"[bold]No negative example[/] ({len(neg['clusters'])}): clusters with "
                      f"{th['min_labelled_for_negatives']}+ labels and none of {', '.join(neg['negatives'])}; "
                      "busiest first", highlight=False)
        for f in neg["clusters"][:show]:
            console.print(f"  cluster {f['cluster']} ({_name(rows[f['cluster']])}): {f['labelled']} labels, "
                          f"{_pct(f['traffic_share'])} of {where}", markup=False, highlight=False)
    dis = flags["disagreement"]
    overall = flags["overall_agreement"]
    console.print(f"[bold]Annotators disagree[/] ({len(dis)}): agreement over {th['agreement_margin']:.0%} below the "
                  f"project's ({_pct(overall)}), on {th['min_agreement_items']}+ items", highlight=False)
    for f in dis[:show]:
        console.print(f"  cluster {f['cluster']} ({_name(rows[f['cluster']])}): {_pct(f['agreement'])} on "
                      f"{f['agreement_items']} items", markup=False, highlight=False)

    sh = r["shift"]
    test = sh["test"]
    if test["status"] == "done":
        console.print(f"[bold]Shift[/], labelled set vs {sh['b']}: {'SHIFT' if test['shift'] else 'no shift'} "
                      f"(p = {test['p_value']:.3g}, alpha {test['alpha']}; MMD^2 {test['mmd2']:.4f} vs "
                      f"{test['mmd2_null']:.4f} under no shift; {test['sample_a']} vs {test['sample_b']} rows); "
                      f"cluster shares differ by {sh['total_variation']:.0%} (total variation)", highlight=False)
        for c in sh["clusters"][:min(show, 5)]:
            if c["difference"] > 0:
                console.print(f"  cluster {c['cluster']} ({_name(rows[c['cluster']])}): {_pct(c['share_b'])} of "
                              f"{sh['b']}, {_pct(c['share_a'])} of labels", markup=False, highlight=False)
    else:
        console.print(f"[bold]Shift[/]: not tested ({test['reason']})", highlight=False)

    errors = r["errors"]
    if errors is None:
        console.print(f"[bold]Model errors[/]: none to cluster ({r['errors_reason']})", highlight=False)
        return
    console.print(f"[bold]Model errors[/]: {errors['errors']} of {errors['n_items']} "
                  f"({', '.join(f'{k} {v}' for k, v in errors.get('sources', {}).items())}); by cluster, worst first",
                  highlight=False)
    for e in errors["by_cluster"][:show]:
        pairs = ", ".join(e["pairs"])
        console.print(f"  cluster {e['cluster']} ({_name(rows[e['cluster']])}): {e['errors']} of {e['items']} wrong "
                      f"({pairs})", markup=False, highlight=False)
        for x in e["examples"][:2]:
            console.print(f"      {x.get('text', '')!r}: {x['label']} -> {x['predicted']}", markup=False, highlight=False)
    console.print("  by confused pair (true -> predicted):", highlight=False)
    for e in errors["by_pair"][:show]:
        console.print(f"  {e['label']} -> {e['predicted']}: {e['errors']}"
                      + (f"; e.g. {e['examples'][0].get('text', '')!r}" if e["examples"] else ""),
                      markup=False, highlight=False)
    if r.get("plot"):
        console.print(f"Map: {r['plot']}", highlight=False)


@handle_errors
def coverage(
    data: Optional[str] = typer.Argument(None, help="A dataset file (.jsonl, .csv, .parquet) to treat as the pool; rows with a label are the labelled set. Default: the project's items."),
    production: Optional[str] = typer.Option(None, help="A sample of production traffic (.jsonl, .csv, .parquet; one text per row, repeats count). Clustered with the pool; the flags and the shift test measure against it. Without it, the pool stands for traffic."),
    plot: Optional[str] = typer.Option(None, help="Write the 2-D map of the clusters to this PNG (size: volume; colour: labelled share; red rings: under-labelled)."),
    text_field: str = typer.Option("text", help="Column holding the text (data file and production sample)."),
    label_field: str = typer.Option("label", help="Column holding the label (data file; production's, if any, scores the model)."),
    id_field: Optional[str] = typer.Option(None, help="Column holding row ids in the data file."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="Number of clusters (default: round(sqrt(n / 4)) between 2 and 100, n = pool + production rows)."),
    seed: int = typer.Option(0, help="Seed of the clustering and of the shift test's sampling and permutations."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    no_sync: bool = NO_SYNC_OPTION,
    show: int = typer.Option(10, help="Clusters listed per table and flag (--json has them all)."),
    as_json: bool = JSON_OPTION,
):
    """Cluster the pool (and a production sample) on the cached embeddings and report, per cluster,
    its size in the pool and in production, labelled items, label mix, agreement, the model's accuracy
    on gold/dev items, top terms and representative texts.

    Three flags, each ranked: clusters production sends that the labels barely cover (biggest gap
    first), clusters with labels but no negative example, and clusters where annotators disagree
    most. The shift test compares the labelled set with production (or the pool): MMD on the
    embeddings with a permutation p-value, plus each cluster's share on both sides. The model's
    mistakes on gold/dev items are grouped by cluster and by confused label pair, worst first.

    Examples: `loop coverage --production prod.jsonl --plot map.png`;
    `loop coverage train.jsonl --production test.jsonl --json` (a file, no project).
    """
    from loop.workflows.coverage import check_plot_path, file_coverage, project_coverage
    from loop.workflows.curate import guideline_negatives

    check_plot_path(plot)
    ctx = context()
    with progress_bars(not as_json) as bars:
        if data is None:
            p = ctx.project_id(project)
            _sync(ctx, p, no_sync)
            report = project_coverage(ctx, p, production=production, text_field=text_field,
                                      negatives=guideline_negatives(ctx.store.project(p)), k=k, seed=seed,
                                      plot=plot, progress=bars)
        else:
            report = file_coverage(ctx, data, production=production, text_field=text_field, label_field=label_field,
                                   id_field=id_field, k=k, seed=seed, plot=plot, progress=bars)
    emit(report, as_json, lambda r: render(r, show))
