"""`loop simulate`: replay the loop on labelled data to choose a strategy and a budget before paying."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from loop.cli.defaults import DEFAULT_RELABEL, DEFAULT_STRATEGY
from loop.cli.output import JSON_OPTION, console, context, csv_option, emit, handle_errors, progress_bars


def register(app: typer.Typer) -> None:
    app.command()(simulate)


def _render(r: dict, plot: str | None) -> None:
    table = Table("strategy", "labels to 95%", "labels to 98%", "x random (95% / 98%)", "x margin (95% / 98%)",
                  "AUC", "worst cluster", "bottom decile", "stop fired at", "accuracy there",
                  "training labels correct", "relabels",
                  title=f"full-data accuracy {r['full_data_accuracy']:.3f}; AUC: mean test accuracy over the "
                        f"{r['config']['budget']} labels (area under the learning curve / budget); training labels "
                        f"correct at the whole budget (aggregated by {r['config']['aggregation']}, vs the truth)")
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    ratio = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for name, e in r["strategies"].items():
        stop = e["stop"]
        table.add_row(name, fmt(e["labels_to_95"]), fmt(e["labels_to_98"]),
                      *(f"{ratio(e.get(f'labels_to_95_ratio_to_{ref}'))} / {ratio(e.get(f'labels_to_98_ratio_to_{ref}'))}"
                        for ref in ("random", "margin")),
                      "-" if e.get("auc") is None else f"{e['auc']:.3f}",
                      *(f"{e[f'{k}_accuracy_mean'][-1]:.3f}" if e.get(f"{k}_accuracy_mean") else "-"
                        for k in ("worst_cluster", "bottom_decile")),
                      f"{fmt(stop['labels_mean'])} ({stop['fired']}/{stop['of']} runs)",
                      "-" if stop["accuracy_mean"] is None else f"{stop['accuracy_mean']:.3f}",
                      f"{e['label_accuracy_mean'][-1]:.3f}" if e["label_accuracy_mean"] else "-",
                      fmt(e["relabelled_mean"]))
    console.print(table)
    if r.get("test_clusters"):
        console.print(f"worst cluster / bottom decile: test accuracy at the whole budget in the worst of the test set's "
                      f"{r['test_clusters']} clusters / the mean of its worst tenth (full data: "
                      f"{r['full_data_worst_cluster_accuracy']:.3f} / {r['full_data_bottom_decile_accuracy']:.3f})")
    if plot:
        console.print(f"learning curves written to {plot}")


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
    spammers: int = typer.Option(0, help="How many of the annotators answer at random (the last ones)."),
    relabel: str = typer.Option(DEFAULT_RELABEL, help="next-round's --relabel to replay: auto, off or a number per round; comma-separated to compare (e.g. auto,off)."),
    cover_share: str = typer.Option("0", help="next-round's --cover-share to replay: the share of each round spent on coverage of production (0: none); comma-separated to compare (e.g. 0,0.2)."),
    cover: Optional[str] = typer.Option(None, help="What coverage aims at, as next-round's --cover reads it (default: the --test file's texts)."),
    text_field: str = typer.Option("text", help="Column holding the text."),
    label_field: str = typer.Option("label", help="Column holding the true label."),
    plot: Optional[str] = typer.Option(None, help="Write the learning curves to this PNG file."),
    as_json: bool = JSON_OPTION,
):
    """Replay the loop on labelled data with simulated annotators, to pick a strategy and a budget before paying.

    Reports per strategy (and per --relabel mode and --cover-share) the model's test accuracy, its
    accuracy in the worst clusters of the test set, and the accuracy of the training labels against
    the truth at every budget; --json has the curves, --plot draws them.
    """
    from loop.errors import ConfigError
    from loop.workflows.simulate import SimConfig, simulate_files
    from loop.workflows.simulate import plot as plot_result

    try:
        errors = [float(e) for e in csv_option(annotator_error)]
    except ValueError:
        raise ConfigError(f"--annotator-error is {annotator_error!r}; give rates in [0, 1) like 0.05,0.1,0.3") from None
    try:
        shares = [float(v) for v in csv_option(cover_share)]
    except ValueError:
        raise ConfigError(f"--cover-share is {cover_share!r}; give shares in [0, 1] like 0,0.2") from None
    cfg = SimConfig(strategies=csv_option(strategy), batch=batch, budget=budget, seeds=seeds, annotators=annotators,
                    overlap=overlap, annotator_error=errors, spammers=spammers, relabel=csv_option(relabel),
                    cover_share=shares or [0.0])
    cfg.check()
    with progress_bars(not as_json) as bars:
        result = simulate_files(context(), data, test, cfg, text_field=text_field, label_field=label_field,
                                progress=bars, production=cover)
    if plot:
        plot_result(result, plot)
    emit(result, as_json, lambda r: _render(r, plot))
