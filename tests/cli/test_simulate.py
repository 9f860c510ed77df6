"""`loop simulate`'s table: ratios to random and to plain margin, and the area under the curve."""

from __future__ import annotations

from loop.cli.output import console
from loop.cli.simulate import _render
from loop.workflows.simulate import summarise


def _run(strategy: str, seed: int, curve: list[tuple[int, float]]) -> dict:
    return {"arm": strategy, "strategy": strategy, "relabel": "off", "seed": seed, "curve": curve,
            "label_curve": [(s, 1.0) for s, _ in curve], "stop": None, "relabelled": 0, "label_noise": 0.0}


def test_the_table_shows_ratios_to_random_and_to_margin_and_the_auc():
    runs = [_run("margin", 0, [(10, 0.9), (20, 0.96), (40, 0.99)]),
            _run("random", 0, [(10, 0.5), (20, 0.9), (40, 0.99)]),
            _run("margin-diverse", 0, [(10, 0.96), (20, 0.99), (40, 0.99)])]
    result = summarise(runs, 1.0, ["margin", "random", "margin-diverse"], [10, 20, 40])
    result["config"] = {"aggregation": "majority", "budget": 40}
    width, console.width = console.width, 250
    try:
        with console.capture() as captured:
            _render(result, None)
    finally:
        console.width = width
    text = captured.get()
    assert "x margin" in text and "x random" in text and "AUC" in text
    row = next(line for line in text.splitlines() if "margin-diverse" in line)
    # 95% at 10 (margin 20, random 40), 98% at 20 (margin 40, random 40); AUC (0.96*10 + 0.99*20) / 40
    assert "0.25 / 0.50" in row and "0.50 / 0.50" in row, row
    assert f"{(0.96 * 10 + 0.99 * 20) / 40:.3f}" in row, row
