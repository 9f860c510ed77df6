"""`loop`: run an active-learning labelling loop on Label Studio.

One module per noun, joined here; each command is a thin layer over a library call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import typer
from rich.table import Table

from loop.cli import guidelines as guidelines_cli
from loop.cli.output import JSON_OPTION, console, emit, handle_errors, progress_bars
from loop.services.context import Context
from loop.errors import LoopError
from loop.services.settings import load_settings
from loop.core.strategies import DEFAULT_STRATEGY, STRATEGIES

app = typer.Typer(help=__doc__.splitlines()[0] + "\n\nStart with `loop up`, then `loop init DATA --labels A,B`, "
                  "`loop annotators add NAME` and `loop next-round`; before training, `loop validate` and `loop export`.", no_args_is_help=True,
                  rich_markup_mode="markdown", pretty_exceptions_enable=False)
predictions_app = typer.Typer(help="Model predictions in Label Studio: push the current model's scores, prune old ones.",
                              no_args_is_help=True)
annotators_app = typer.Typer(help="Manage the people who label: each is a Label Studio user who can log in.",
                             no_args_is_help=True)
app.add_typer(annotators_app, name="annotators")
app.add_typer(predictions_app, name="predictions")
app.add_typer(guidelines_cli.app, name="guidelines")


def _ctx() -> Context:
    return Context(load_settings())


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# -- the local stack ------------------------------------------------------------------------
def _render_services(services) -> None:
    table = Table("service", "state", "pid", "url", title="loop stack")
    for s in services:
        state = "[green]healthy[/]" if s.healthy else ("[yellow]starting[/]" if s.running else "[red]down[/]")
        table.add_row(s.name, state + ("" if s.managed else " (external)"), str(s.pid or "-"), s.url)
    console.print(table)


@app.command()
@handle_errors
def up(as_json: bool = JSON_OPTION):
    """Start the local stack (embedded Redis, Label Studio, ML backend) in the workspace; harmless twice."""
    from loop.services import stack

    settings = load_settings()
    services = stack.up(settings, log=(lambda m: None) if as_json else (lambda m: console.print(f"• {m}")))
    creds = stack.credentials(settings)
    emit([vars(s) for s in services], as_json, lambda _: (
        _render_services(services),
        console.print(f"Label Studio: {settings.ls_url}  login {creds.username} / {creds.password}")))


@app.command()
@handle_errors
def down(as_json: bool = JSON_OPTION):
    """Stop exactly the services `loop up` started (their data stays in the workspace)."""
    from loop.services import stack

    stopped = stack.down(load_settings(), log=(lambda m: None) if as_json else (lambda m: console.print(f"• {m}")))
    if as_json:
        emit({"stopped": stopped}, True, print)


@app.command()
@handle_errors
def ps(as_json: bool = JSON_OPTION):
    """Show each service of the stack and whether it is healthy."""
    from loop.services import stack

    services = stack.ps(load_settings())
    emit([vars(s) for s in services], as_json, lambda _: _render_services(services))
    if not all(s.healthy for s in services):
        raise typer.Exit(1)


@app.command()
@handle_errors
def demo(
    data: str = typer.Option("examples/support_tickets.jsonl", help="The sample dataset."),
    guidelines: str = typer.Option("guidelines", help="The sample's guidelines folder."),
    size: int = typer.Option(20, help="Items in round 1."),
    as_json: bool = JSON_OPTION,
):
    """Bring up the stack, create a demo project from the bundled sample and run round 1."""
    from loop.workflows.demo import run_demo

    ctx = _ctx()
    log = (lambda m: None) if as_json else (lambda m: console.print(f"• {m}"))
    with progress_bars(not as_json) as bars:
        result = run_demo(ctx, data, guidelines, size=size, log=log, progress=bars)

    def render(r):
        _render_round(r["round"])
        people = "\n".join(f"  {n:<6} {v['email']:<18} password {v['password']}" for n, v in r["annotators"].items())
        console.print(
            f"\n[bold]Label Studio[/]: {r['url']}\n"
            f"  admin  {r['admin']['email']:<18} password {r['admin']['password']}\n{people}\n\n"
            "[bold]Next[/]: log in as an annotator, open your \"Round 1 · name\" tab and label its items;\n"
            "then run `loop status` to watch progress and `loop next-round --annotators alice,bob,carol` "
            "for round 2.\n`loop down` stops the stack; its data stays in .loop/.")

    emit(result, as_json, render)


# -- projects -------------------------------------------------------------------------------
@app.command()
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
    as_json: bool = JSON_OPTION,
):
    """Create (or link) a Label Studio project from a dataset, embed every item once, connect the ML backend."""
    from loop.workflows.project import init_project

    ctx = _ctx()
    with progress_bars(not as_json) as bars:
        result = init_project(ctx, data, text_field=text_field, label_field=label_field, id_field=id_field,
                              labels=_csv(labels) or None, guidelines_dir=guidelines, project_id=project_id,
                              title=title, dev=dev, progress=bars)
    emit(result, as_json, lambda r: console.print(
        f"Project {r['project_id']} {'linked' if r['linked'] else 'created'}: {r['items']} items "
        f"({r['imported']} imported, {r['embedded']} newly embedded), labels {', '.join(r['labels'])}.\n"
        f"Open {r['url']}; next: `loop annotators add NAME`, then `loop next-round`."))


# -- annotators -----------------------------------------------------------------------------
@annotators_app.command("add")
@handle_errors
def annotators_add(
    name: str = typer.Argument(..., help="Short name used in rounds, e.g. alice."),
    email: Optional[str] = typer.Option(None, help="Login e-mail (default NAME@loop.local)."),
    password: Optional[str] = typer.Option(None, help="Login password, 8+ characters (default: generated and printed once)."),
    as_json: bool = JSON_OPTION,
):
    """Create a Label Studio user who can log in, and record them as an annotator."""
    from loop.workflows.project import add_annotator

    rec = add_annotator(_ctx(), name, email=email, password=password)
    emit(rec, as_json, lambda r: console.print(
        f"Annotator {r['name']}: log in as {r['email']}"
        + (f" with password {r['password']}" if r["password"] else " (existing Label Studio user)")))


@annotators_app.command("list")
@handle_errors
def annotators_list(as_json: bool = JSON_OPTION):
    """List the recorded annotators."""
    people = sorted(_ctx().store.annotators().values(), key=lambda a: a["name"])

    def render(rows):
        table = Table("name", "email", "Label Studio user id")
        for a in rows:
            table.add_row(a["name"], a["email"], str(a["ls_user_id"]))
        console.print(table)

    emit(people, as_json, render)


@app.command()
@handle_errors
def adjudicate(
    adjudicator: str = typer.Option(..., help="Who decides contested items (a recorded annotator)."),
    limit: Optional[int] = typer.Option(None, help="At most this many new items (worst first)."),
    project: Optional[int] = typer.Option(None, help="Project id (default: the last one `loop init` set up)."),
    as_json: bool = JSON_OPTION,
):
    """Send contested items (annotators disagree; most even split first) to an adjudicator, whose label is final."""
    from loop.labels.adjudication import assign

    ctx = _ctx()
    r = assign(ctx, ctx.project_id(project), adjudicator, limit=limit)

    def render(r):
        console.print(f"{len(r['assigned'])} contested items sent to {r['adjudicator']}; "
                      f"{r['open_for_adjudicator']} now wait in their tab \"Adjudication · {r['adjudicator']}\" "
                      f"({r['contested']} contested in all).")
        if r["skipped_own_items"]:
            console.print(f"{len(r['skipped_own_items'])} items were left out: {r['adjudicator']} labelled them.")
        table = Table("item", "labels", "top share", "adjudicator", title="contested queue (worst first)")
        for q in r["queue"][:20]:
            table.add_row(q["item_id"], ", ".join(f"{k} x{v}" for k, v in q["labels"].items()),
                          f"{q['top_share']:.0%}", q["adjudicator"] or "-")
        console.print(table)

    emit(r, as_json, render)


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
    people = Table("annotator", "labels", "agreement with consensus", "estimated accuracy",
                   title=f"annotators (consensus: {r['consensus_method']})")
    for name, a in sorted(r["annotators"].items()):
        people.add_row(str(name), str(a["n"]), fmt(a["agreement_with_consensus"]), fmt(a["estimated_accuracy"]))
    console.print(people)
    if r["confusions"]:
        conf = Table("label pair", "annotator pairs split on it", "items", "share of disagreements",
                     title="most confused labels (a missing guideline rule?)")
        for c in r["confusions"][:10]:
            conf.add_row(" vs ".join(c["labels"]), str(c["pairs"]), str(c["items"]), f"{c['share']:.0%}")
        console.print(conf)
    for w in r["warnings"]:
        console.print(f"[bold yellow]Warning[/]: {w}")


@app.command()
@handle_errors
def agreement(
    round_id: Optional[int] = typer.Option(None, "--round", help="Only the items of this round."),
    guideline_version: Optional[int] = typer.Option(None, help="Only labels made under this guideline version."),
    annotations: Optional[str] = typer.Option(None, help="Measure a file of raw labels made elsewhere instead (JSONL, CSV, Parquet)."),
    item_field: str = typer.Option("item_id", help="With --annotations: the item id column."),
    annotator_field: str = typer.Option("annotator", help="With --annotations: the annotator column."),
    label_field: str = typer.Option("label", help="With --annotations: the label column."),
    method: str = typer.Option("majority", help="Consensus for per-annotator figures: majority, dawid-skene, majority-ds."),
    project: Optional[int] = typer.Option(None, help="Project id (default: the last one `loop init` set up)."),
    as_json: bool = JSON_OPTION,
):
    """How far annotators agree: percent agreement, Cohen's kappa per pair, Krippendorff's alpha, Fleiss'
    kappa where defined, per-annotator reliability and the label pairs they confuse most."""
    from loop.workflows.agreement import full_report, project_records

    if annotations:
        if round_id is not None or guideline_version is not None:
            raise LoopError("--round and --guideline-version apply to the project's labels, not to --annotations")
        from loop.labels.label_files import read_label_file

        records = read_label_file(annotations, item_field, annotator_field, label_field)
    else:
        from loop.workflows.rounds import sync_annotations

        ctx = _ctx()
        p = ctx.project_id(project)
        sync_annotations(ctx, p)
        records = project_records(ctx.store, p, round_id=round_id, guideline_version=guideline_version)
    emit(full_report(records, method=method), as_json, _render_agreement)


@app.command("aggregate")
@handle_errors
def aggregate_cmd(
    annotations: str = typer.Argument(..., help="A file of raw labels: one row per (item, annotator, label)."),
    out: str = typer.Option(..., help="Where to write one label per item (.jsonl, .csv or .parquet)."),
    method: str = typer.Option("majority", help="majority, dawid-skene or majority-ds."),
    item_field: str = typer.Option("item_id", help="The item id column."),
    annotator_field: str = typer.Option("annotator", help="The annotator column."),
    label_field: str = typer.Option("label", help="The label column."),
    as_json: bool = JSON_OPTION,
):
    """Turn several labels per item into one, with its confidence and how it was decided."""
    from collections import Counter

    from loop.labels.aggregation import aggregate
    from loop.labels.label_files import read_label_file, write_aggregate

    records = read_label_file(annotations, item_field, annotator_field, label_field)
    result = aggregate(records, method=method)
    path = write_aggregate(out, result)
    summary = {"items": len(result), "method": method, "out": str(path),
               "decided_by": dict(Counter(v["decided_by"] for v in result.values())),
               "labels": dict(Counter(v["label"] for v in result.values()))}
    emit(summary, as_json, lambda s: console.print(
        f"{s['items']} items aggregated by {s['method']} into {s['out']}: "
        + ", ".join(f"{k} {v}" for k, v in s["decided_by"].items())))


# -- predictions ----------------------------------------------------------------------------
@predictions_app.command("push")
@handle_errors
def predictions_push(
    include_labelled: bool = typer.Option(False, "--include-labelled", help="Score labelled items too."),
    project: Optional[int] = typer.Option(None, help="Project id (default: the last one `loop init` set up)."),
    as_json: bool = JSON_OPTION,
):
    """Score every unlabelled task with the current model and send the predictions to Label Studio in bulk."""
    from loop.workflows.predictions import push

    ctx = _ctx()
    r = push(ctx, ctx.project_id(project), include_labelled=include_labelled)
    emit(r, as_json, lambda r: console.print(f"{r['pushed']} predictions of model {r['model_version']} pushed "
                                             f"in {r['seconds']} s ({r['already_there']} were there already)."))


@predictions_app.command("prune")
@handle_errors
def predictions_prune(
    project: Optional[int] = typer.Option(None, help="Project id (default: the last one `loop init` set up)."),
    as_json: bool = JSON_OPTION,
):
    """Delete predictions of older model versions, so Label Studio's score column reflects the current model."""
    from loop.workflows.predictions import prune

    ctx = _ctx()
    r = prune(ctx, ctx.project_id(project))
    emit(r, as_json, lambda r: console.print(f"{r['deleted']} predictions of older models deleted; "
                                             f"model {r['model_version']} remains."))


# -- rounds ---------------------------------------------------------------------------------
def _render_round(r: dict) -> None:
    head = f"Round {r['id']}" + (" (resumed after an interruption)" if r.get("resumed") else "")
    console.print(f"[bold]{head}[/]: {r['size']} items by {r['strategy']}, overlap {r['overlap']}, "
                  f"model {r.get('model_version') or 'none yet'}, guidelines v{r.get('guideline_version') or '-'}")
    if r.get("closed_previous"):
        c = r["closed_previous"]
        console.print(f"closed round {c['round']}" + (f"; {c['released']} unlabelled items back in the pool"
                                                      if c["released"] else ""))
        ag = c.get("agreement")
        if ag:
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            console.print(f"round {c['round']} agreement: {fmt(ag['percent'])} of pairs agree, alpha {fmt(ag['alpha'])}, "
                          f"mean kappa {fmt(ag['mean_kappa'])} over {ag['items']} items; {c['contested']} contested"
                          + (" (`loop adjudicate --adjudicator NAME`)" if c["contested"] else ""))
    table = Table("annotator", "items", "view")
    for a, count in sorted(r["items_per_annotator"].items()):
        table.add_row(a, str(count), f"Round {r['id']} · {a} (tab {r['views'].get(a, '-')})")
    console.print(table)
    console.print("Annotators open their tab in the project's Data Manager and label its items.")


@app.command("next-round")
@handle_errors
def next_round(
    size: int = typer.Option(50, help="How many new items to send out this round."),
    annotators: str = typer.Option(..., help="Who labels this round, comma-separated: alice,bob,carol."),
    overlap: int = typer.Option(2, help="How many of them label each item."),
    strategy: str = typer.Option(DEFAULT_STRATEGY, help=f"Query strategy: {', '.join(STRATEGIES)}."),
    budget: Optional[int] = typer.Option(None, help="Total labels you will pay for (kept for later rounds); rounds shrink to fit it."),
    guideline_version: Optional[int] = typer.Option(None, help="Train only on labels made under this guideline version."),
    close_incomplete: bool = typer.Option(False, "--close-incomplete", help="Close the previous round even if annotators still owe items."),
    project: Optional[int] = typer.Option(None, help="Project id (default: the last one `loop init` set up)."),
    seed: Optional[int] = typer.Option(None, help="Random seed for cold start and random selection."),
    as_json: bool = JSON_OPTION,
):
    """Sync labels, retrain, pick the most informative items and assign each to OVERLAP annotators."""
    from loop.workflows.rounds import check_round_options, next_round as run

    check_round_options(size, _csv(annotators), overlap, strategy)
    ctx = _ctx()
    result = run(ctx, ctx.project_id(project), size=size, annotators=_csv(annotators), overlap=overlap,
                 strategy=strategy, close_incomplete=close_incomplete, seed=seed, budget=budget,
                 guideline_version=guideline_version)
    result.pop("scores", None)
    emit(result, as_json, _render_round)


@app.command()
@handle_errors
def status(
    project: Optional[int] = typer.Option(None, help="Project id (default: the last one `loop init` set up)."),
    plot: Optional[str] = typer.Option(None, help="Also write the learning curve to this PNG file."),
    as_json: bool = JSON_OPTION,
):
    """Rounds, progress per annotator, budget, class balance, the learning curve and whether to stop."""
    from loop.workflows.rounds import plot_curve, status as get_status

    ctx = _ctx()
    s = get_status(ctx, ctx.project_id(project))
    if plot:
        plot_curve(s, plot)

    def render(s):
        budget = f" of a budget of {s['budget']}" if s["budget"] else ""
        console.print(f"[bold]Project {s['project_id']}[/]: {s['items']} items, {s['labels_spent']} labels spent{budget} "
                      f"on {s['items_labelled']} items, {s['pool']} in the pool; model {s['model_version'] or 'none yet'}")
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
                          title="learning curve")
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            for c in s["learning_curve"]:
                curve.add_row(str(c["round"]), str(c["n_labels"]), fmt(c.get("kappa")), fmt(c.get("dev_accuracy")),
                              fmt(c.get("dev_macro_f1")))
            console.print(curve)
        if s["contested"]:
            console.print(f"{s['contested']} contested items ({s['awaiting_adjudication']} with an adjudicator); "
                          "`loop adjudicate --adjudicator NAME` sends them to someone who decides")
        for warning in s["warnings"]:
            console.print(f"[bold yellow]Warning[/]: {warning}")
        stop = s["stop"]
        console.print(("[bold green]Recommend stopping[/]: " if stop["recommend"] else "[bold]Keep labelling[/]: ")
                      + stop["kappa"]["reason"] + (f"; {stop['dev_plateau']['reason']}" if stop["dev_plateau"] else ""))
        if plot:
            console.print(f"learning curve written to {plot}")

    emit(s, as_json, render)


@app.command()
@handle_errors
def simulate(
    data: str = typer.Argument(..., help="An already-labelled dataset (the pool): .jsonl, .csv or .parquet."),
    test: str = typer.Option(..., help="A labelled held-out file to measure accuracy on."),
    strategy: str = typer.Option(f"{DEFAULT_STRATEGY},random", help="Strategies to compare, comma-separated."),
    batch: int = typer.Option(50, help="Items per round."),
    budget: int = typer.Option(3000, help="Labels bought per run (items x overlap)."),
    seeds: int = typer.Option(3, help="Runs per strategy, with different random seeds."),
    annotators: int = typer.Option(3, help="Simulated annotators."),
    overlap: int = typer.Option(2, help="Annotators per item."),
    annotator_error: str = typer.Option("0.05,0.1,0.3", help="Error rate of each simulated annotator (cycled), comma-separated."),
    text_field: str = typer.Option("text", help="Column holding the text."),
    label_field: str = typer.Option("label", help="Column holding the true label."),
    plot: Optional[str] = typer.Option(None, help="Write the learning curves to this PNG file."),
    as_json: bool = JSON_OPTION,
):
    """Replay the loop on labelled data with simulated annotators, to pick a strategy and a budget before paying."""
    from loop.core.dataset import read_items
    from loop.core.embeddings import embed_texts
    from loop.workflows.simulate import SimConfig, plot as plot_result, simulate as run

    cfg = SimConfig(strategies=_csv(strategy), batch=batch, budget=budget, seeds=seeds, annotators=annotators,
                    overlap=overlap, annotator_error=[float(e) for e in _csv(annotator_error)])
    cfg.check()
    pool = read_items(data, text_field=text_field, label_field=label_field)
    held = read_items(test, text_field=text_field, label_field=label_field)
    for name, rows in (("pool", pool), ("test", held)):
        missing = [i.id for i in rows if i.label is None]
        if missing:
            raise LoopError(f"{len(missing)} {name} rows have no {label_field!r} (e.g. {missing[0]}); "
                            "simulation needs every row labelled")
    ctx = _ctx()
    with progress_bars(not as_json) as bars:
        X, _ = embed_texts([i.text for i in pool], ctx.cache, ctx.embedder, progress=bars("embedding pool", len(pool)))
        X_test, _ = embed_texts([i.text for i in held], ctx.cache, ctx.embedder, progress=bars("embedding test", len(held)))
        result = run(X, [i.label for i in pool], X_test, [i.label for i in held], cfg,
                     progress=bars("simulating", len(cfg.strategies) * seeds))
    if plot:
        plot_result(result, plot)

    def render(r):
        table = Table("strategy", "labels to 95%", "labels to 98%", "x random (98%)", "stop fired at",
                      "accuracy there", title=f"full-data accuracy {r['full_data_accuracy']:.3f}")
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        for name, e in r["strategies"].items():
            stop = e["stop"]
            table.add_row(name, fmt(e["labels_to_95"]), fmt(e["labels_to_98"]),
                          "-" if e.get("labels_to_98_ratio_to_random") is None else f"{e['labels_to_98_ratio_to_random']:.2f}",
                          f"{fmt(stop['labels_mean'])} ({stop['fired']}/{stop['of']} runs)",
                          "-" if stop["accuracy_mean"] is None else f"{stop['accuracy_mean']:.3f}")
        console.print(table)
        if plot:
            console.print(f"learning curves written to {plot}")

    emit(result, as_json, render)


# -- curation: `loop validate`, `loop export` (loop/cli/curate.py) ----------------------------
from loop.cli import curate as _curate  # noqa: E402  (registered after the core commands, for --help's order)

_curate.register(app)


if __name__ == "__main__":
    app()
