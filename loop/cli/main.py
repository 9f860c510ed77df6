"""`loop`: run an active-learning labelling loop on Label Studio.

One module per noun, joined here in the order a user meets them; each registers its commands with
`register(app)`, and each command is a thin layer over a `loop.workflows` call.
"""

from __future__ import annotations

import typer

from loop.cli import (
    annotators,
    audit,
    coverage,
    curate,
    gold,
    guidelines,
    labels,
    predictions,
    project,
    release,
    rounds,
    simulate,
    stack,
)

app = typer.Typer(help=__doc__.splitlines()[0] + "\n\nStart with `loop up`, then `loop init DATA --labels A,B`, "
                  "`loop annotators add NAME` and `loop next-round`; before training, `loop validate` and "
                  "`loop export`; to prove the labels good, `loop audit`, `loop gold` and `loop release` (numbered "
                  "versions); to see where the data is thin against production, `loop coverage`.",
                  no_args_is_help=True, rich_markup_mode="markdown", pretty_exceptions_enable=False)

for noun in (stack, project, annotators, rounds, predictions, labels, audit, gold, guidelines, simulate, curate,
             coverage, release):
    noun.register(app)


if __name__ == "__main__":
    app()
