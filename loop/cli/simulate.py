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
                  "AUC", "stop fired at", "accuracy there", "training labels correct", "relabels",
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
                      f"{fmt(stop['labels_mean'])} ({stop['fired']}/{stop['of']} runs)",
                      "-" if stop["accuracy_mean"] is None else f"{stop['accuracy_mean']:.3f}",
                      f"{e['label_accuracy_mean'][-1]:.3f}" if e["label_accuracy_mean"] else "-",
                      fmt(e["relabelled_mean"]))
    console.print(table)
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
    text_field: str = typer.Option("text", help="Column holding the text."),
    label_field: str = typer.Option("label", help="Column holding the true label."),
    plot: Optional[str] = typer.Option(None, help="Write the learning curves to this PNG file."),
    as_json: bool = JSON_OPTION,
):
    """Replay the loop on labelled data with simulated annotators, to pick a strategy and a budget before paying.

    Reports per strategy (and per --relabel mode) the model's test accuracy and the accuracy of the
    training labels against the truth at every budget; --json has the curves, --plot draws them.
    """
    from loop.errors import ConfigError
    from loop.workflows.simulate import SimConfig, simulate_files
    from loop.workflows.simulate import plot as plot_result

    try:
        errors = [float(e) for e in csv_option(annotator_error)]
    except ValueError:
        raise ConfigError(f"--annotator-error is {annotator_error!r}; give rates in [0, 1) like 0.05,0.1,0.3") from None
    cfg = SimConfig(strategies=csv_option(strategy), batch=batch, budget=budget, seeds=seeds, annotators=annotators,
                    overlap=overlap, annotator_error=errors, spammers=spammers, relabel=csv_option(relabel))
    cfg.check()
    with progress_bars(not as_json) as bars:
        result = simulate_files(context(), data, test, cfg, text_field=text_field, label_field=label_field,
                                progress=bars)
    if plot:
        plot_result(result, plot)
    emit(result, as_json, lambda r: _render(r, plot))
