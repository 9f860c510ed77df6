"""`loop next-round` and `loop status`: send out a round, and see where the project stands."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import typer
from rich.table import Table

from loop.cli.defaults import AGGREGATION_METHODS, DEFAULT_RELABEL, DEFAULT_STRATEGY, STRATEGY_NAMES
from loop.cli.output import (
    JSON_OPTION,
    PROJECT_OPTION_HELP,
    console,
    context,
    csv_option,
    emit,
    handle_errors,
    reliability_table,
)


def register(app: typer.Typer) -> None:
    app.command("next-round")(next_round)
    app.command()(status)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def render_round(r: dict) -> None:
    head = f"Round {r['id']}" + (" (resumed after an interruption)" if r.get("resumed") else "")
    console.print(f"[bold]{head}[/]: {r['size']} items by {r['strategy']}, overlap {r['overlap']}, "
                  f"model {r.get('model_version') or 'none yet'}, guidelines v{r.get('guideline_version') or '-'}")
    if r.get("closed_previous"):
        c = r["closed_previous"]
        console.print(f"closed round {c['round']}" + (f"; {c['released']} unlabelled items back in the pool"
                                                      if c["released"] else ""))
        if c.get("short"):
            console.print(f"{c['short']} of its items got fewer labels than the overlap (skipped or released): "
                          + ", ".join(c["short_items"][:10]) + (" ..." if c["short"] > 10 else ""))
        ag = c.get("agreement")
        if ag:
            console.print(f"round {c['round']} agreement: {_fmt(ag['percent'])} of pairs agree, alpha "
                          f"{_fmt(ag['alpha'])}, mean kappa {_fmt(ag['mean_kappa'])} over {ag['items']} items; "
                          f"{c['contested']} contested" + (" (`loop adjudicate --adjudicator NAME`)" if c["contested"] else ""))
    relabels = (r.get("relabel") or {}).get("items", 0)
    if relabels:
        console.print(f"{relabels} labelled items sent for another label (their label is least certain), "
                      f"{r['size']} new items")
    cover = r.get("cover")
    if cover:
        where = ", ".join(f"cluster {c}: {n}" for c, n in cover["clusters"].items()) or "no under-covered cluster"
        console.print(f"{cover['items']} of the new items chosen for coverage of {cover['source']} "
                      f"({cover['gap_items']} where production goes and the labels do not ({where}); "
                      f"{cover['negative_items']} negative-looking); the rest by {r['strategy']}")
    controls = (r.get("controls") or {}).get("items", 0)
    if controls:
        console.print(f"{controls} control items (gold, unmarked) mixed into the queues: their answers measure each "
                      "annotator (`loop status`) and are no labels")
    table = Table("annotator", "new items", "relabels", "done", "their queue in Label Studio")
    for a, given in r["assignments"].items():
        table.add_row(a, str(len(given["items"])), str(len((given.get("relabels") or {}).get("items", []))),
                      str(given["done"]), (r.get("queues") or {}).get(a, {}).get("url", "-"))
    console.print(table)
    if r.get("status") == "open":
        console.print("Each annotator opens their queue (a Label Studio project of their own) and clicks "
                      "\"Label All Tasks\" (--json lists each one's item and task ids).")


@handle_errors
def next_round(
    size: int = typer.Option(50, help="How many new items to send out this round."),
    annotators: str = typer.Option(..., help="Who labels this round, comma-separated: alice,bob,carol."),
    overlap: int = typer.Option(2, help="How many of them label each item."),
    strategy: str = typer.Option(DEFAULT_STRATEGY, help=f"Query strategy: {', '.join(STRATEGY_NAMES)}."),
    budget: Optional[int] = typer.Option(None, help="Total labels you will pay for (kept for later rounds); rounds shrink to fit it."),
    guideline_version: Optional[str] = typer.Option(
        None, help="Train only on labels made under this guideline version, or `all` for every label. Kept "
                   "for later rounds and the trainer (the project's training policy; `loop status` shows it)."),
    aggregation: Optional[str] = typer.Option(
        None, help=f"How several labels of an item become one: {', '.join(AGGREGATION_METHODS)}. Kept like --guideline-version."),
    relabel: str = typer.Option(DEFAULT_RELABEL, help="Spend part of the round on another label for labelled items whose label is least certain, each from an annotator who has not labelled it: auto (as many as score lower than the new items), a number per round, or off."),
    gold_rate: float = typer.Option(0.0, help="Mix about this share of control items (gold items, unmarked) into each annotator's new items, at least one when above 0; their answers measure the annotator and never count as labels (e.g. 0.05)."),
    cover: Optional[str] = typer.Option(None, help="A file of what production sends (.jsonl, .csv or .parquet, one text per row, repeats kept): spend --cover-share of the new items on clusters production sends and the labels miss (weighted by production volume) and on negative-looking items; the rest by --strategy."),
    cover_share: float = typer.Option(0.2, help="With --cover: the share of the new items spent on coverage (0 to 1)."),
    close_incomplete: bool = typer.Option(False, "--close-incomplete", help="Close the previous round even if annotators still owe items."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    seed: Optional[int] = typer.Option(None, help="Random seed for cold start and random selection."),
    engine: Optional[str] = typer.Option(None, help="Where to score the pool: `local` (this process) or `ray` (the Ray cluster at LOOP_RAY_ADDRESS, `pip install 'loop-al[ray]'`); default: ray when LOOP_RAY_ADDRESS is set, else local."),
    as_json: bool = JSON_OPTION,
):
    """Sync labels, retrain, pick the most informative items and assign each to OVERLAP annotators.

    With --json the round's `assignments` give each annotator's item ids and Label Studio task ids."""
    from loop.workflows.rounds import next_round as run
    from loop.workflows.training import parse_guideline_version

    result = run(context(), project, size=size, annotators=csv_option(annotators), overlap=overlap,
                 strategy=strategy, close_incomplete=close_incomplete, seed=seed, budget=budget,
                 guideline_version=parse_guideline_version(guideline_version), aggregation=aggregation,
                 relabel=relabel, gold_rate=gold_rate, cover=cover, cover_share=cover_share, engine=engine)
    emit(result, as_json, render_round)


def _render_status(s: dict, plot: str | None) -> None:
    budget = f" of a budget of {s['budget']}" if s["budget"] else ""
    console.print(f"[bold]Project {s['project_id']}[/]: {s['items']} items, {s['labels_spent']} labels spent{budget} "
                  f"on {s['items_labelled']} items, {s['pool']} in the pool; model {s['model_version'] or 'none yet'}")
    gold = (s.get("gold") or {}).get("count")
    console.print(f"Models learn from {s['training_policy']['description']} ({s['training_items']} items)."
                  + (f" {gold} gold items kept apart (`loop gold list`)." if gold else ""))
    if s.get("coverage"):
        console.print(f"Coverage: {s['coverage']['line']}", markup=False, highlight=False)
    rounds = Table("round", "status", "strategy", "size", "overlap", "progress (done/assigned)", "started")
    for r in s["rounds"]:
        prog = ", ".join(f"{a} {v['done']}/{v['assigned']}" for a, v in sorted(r["progress"].items()))
        started = datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M") if r["created_at"] else "-"
        rounds.add_row(str(r["id"]), r["status"], r["strategy"], str(r["size"]), str(r["overlap"]), prog, started)
    console.print(rounds)
    total = sum(s["class_balance"].values()) or 1
    balance = Table("label", "items", "share")
    for lab, n in s["class_balance"].items():
        balance.add_row(lab, str(n), f"{n / total:.0%}")
    console.print(balance)
    if s["learning_curve"]:
        curve = Table("round", "labelled items", "kappa vs previous", "dev accuracy", "dev macro-F1",
                      "gold accuracy", "gold macro-F1", title="learning curve")
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        for c in s["learning_curve"]:
            curve.add_row(str(c["round"]), str(c["n_labels"]), fmt(c.get("kappa")), fmt(c.get("dev_accuracy")),
                          fmt(c.get("dev_macro_f1")), fmt(c.get("gold_accuracy")), fmt(c.get("gold_macro_f1")))
        console.print(curve)
    if s.get("annotators"):
        console.print(reliability_table(s["annotators"], "annotators (estimated accuracy of their labels)"))
    est = s.get("training_labels") or {}
    if est.get("value") is not None:
        console.print(f"Training labels expected right: {est['value']:.1%} of {est['n_items']} items "
                      f"(about {est['expected_wrong']:.0f} wrong, by the {est['method']} posterior)")
    if s.get("latest_audit"):
        a = s["latest_audit"]
        console.print(f"Latest audit ({a['audit']}, by {a['auditor']}, {a['n_answered']} of {a['sample']} answered): "
                      f"{a['summary']}")
    if s["contested"]:
        audited = f", {s['disputed_by_audit']} disputed by an audit" if s.get("disputed_by_audit") else ""
        console.print(f"{s['contested']} contested items ({s['awaiting_adjudication']} with an adjudicator{audited}); "
                      "`loop adjudicate --adjudicator NAME` sends them to someone who decides")
    for warning in s["warnings"]:
        console.print(f"[bold yellow]Warning[/]: {warning}")
    stop = s["stop"]
    console.print(("[bold green]Recommend stopping[/]: " if stop["recommend"] else "[bold]Keep labelling[/]: ")
                  + stop["kappa"]["reason"] + (f"; {stop['dev_plateau']['reason']}" if stop["dev_plateau"] else ""))
    if plot:
        console.print(f"learning curve written to {plot}")


@handle_errors
def status(
    round_id: Optional[int] = typer.Option(None, "--round", help="Show this round in detail: who got which item (ids and task ids) and who still owes what."),
    project: Optional[int] = typer.Option(None, help=PROJECT_OPTION_HELP),
    plot: Optional[str] = typer.Option(None, help="Also write the learning curve to this PNG file."),
    as_json: bool = JSON_OPTION,
):
    """Rounds, progress per annotator, budget, class balance, the learning curve and whether to stop."""
    if round_id is not None and plot:
        raise typer.BadParameter("--plot draws the whole project's curve; drop --round for it", param_hint="--plot")
    ctx = context()
    p = ctx.project_id(project)  # Redis first: without it, one error line before the heavy imports below
    from loop.workflows.status import plot_curve, round_status
    from loop.workflows.status import status as get_status

    if round_id is not None:
        emit(round_status(ctx, p, round_id), as_json, render_round)
        return
    s = get_status(ctx, p)
    if plot:
        plot_curve(s, plot)
    emit(s, as_json, lambda s: _render_status(s, plot))
