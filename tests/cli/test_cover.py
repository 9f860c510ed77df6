"""`next-round --cover` and `simulate --cover-share` on the command line: options checked before any
service, the round's summary line, and the simulation's JSON with and without coverage."""

from __future__ import annotations

import json

from rich.console import Console
from typer.testing import CliRunner

from loop.cli import rounds as rounds_cli
from loop.cli.main import app
from loop.core.cover import DEFAULT_COVER_SHARE
from tests.cli.conftest import one_error_line
from tests.helpers import REPO


def test_a_bad_cover_share_or_a_missing_file_is_one_error_line_before_redis(clean_env, tmp_path):
    result = CliRunner().invoke(app, ["next-round", "--annotators", "a", "--overlap", "1", "--cover",
                                      str(tmp_path / "missing.jsonl")])
    one_error_line(result, "missing.jsonl", "no such file")
    prod = tmp_path / "prod.jsonl"
    prod.write_text(json.dumps({"text": "hello"}) + "\n")
    result = CliRunner().invoke(app, ["next-round", "--annotators", "a", "--overlap", "1", "--cover", str(prod),
                                      "--cover-share", "1.5", "--json"])
    one_error_line(result, "--cover-share is 1.5", "[0, 1]")
    assert result.stdout == ""
    result = CliRunner().invoke(app, ["simulate", str(prod), "--test", str(prod), "--cover-share", "0,lots"])
    one_error_line(result, "--cover-share", "0,0.2")


def test_the_cover_share_default_is_the_cores():
    import typer

    root = typer.main.get_command(app)
    option = next(p for p in root.commands["next-round"].params if p.name == "cover_share")
    assert option.default == DEFAULT_COVER_SHARE


def test_the_round_summary_says_how_many_items_came_from_coverage_and_where(monkeypatch):
    console = Console(record=True, width=200)
    monkeypatch.setattr(rounds_cli, "console", console)
    record = {"id": 3, "size": 10, "strategy": "margin-diverse", "overlap": 1, "assignments": {},
              "cover": {"source": "prod.jsonl", "share": 0.2, "items": 2, "gap_items": 1, "negative_items": 1,
                        "clusters": {"7": 1}, "gaps": {"7": 0.3}, "k": 9, "production_rows": 40,
                        "items_chosen": ["i1", "i2"]}}
    rounds_cli.render_round(record)
    text = console.export_text()
    assert "2 of the new items chosen for coverage of prod.jsonl" in text
    assert "cluster 7: 1" in text and "1 negative-looking" in text and "the rest by margin-diverse" in text


def test_simulate_compares_cover_shares_with_worst_cluster_accuracy_in_json(tmp_path, monkeypatch):
    """The command end to end on the bundled sample (it has an out_of_scope label), real embedding model."""
    rows = [json.loads(line) for line in (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()]
    (tmp_path / "pool.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:300]))
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows[300:]))
    monkeypatch.setenv("LOOP_WORKSPACE", str(tmp_path / "ws"))
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "pool.jsonl"), "--test", str(tmp_path / "test.jsonl"),
                                      "--strategy", "margin", "--batch", "20", "--budget", "60", "--seeds", "2",
                                      "--overlap", "1", "--annotators", "1", "--annotator-error", "0",
                                      "--relabel", "off", "--cover-share", "0,0.25", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["strategies"]) == {"margin, cover 0", "margin, cover 0.25"}
    assert out["config"]["cover_share"] == [0.0, 0.25] and out["config"]["production"] == 100
    assert out["strategies"]["margin, cover 0"]["covered_mean"] == 0
    # 5 of the 20 new items of each of the 3 rounds (the cold start too: production is all it has to go by)
    assert out["strategies"]["margin, cover 0.25"]["covered_mean"] == 15
    assert 0 < out["test_clusters"] <= 100
    assert 0 <= out["full_data_worst_cluster_accuracy"] <= out["full_data_bottom_decile_accuracy"] <= 1
    for entry in out["strategies"].values():
        worst, decile = entry["worst_cluster_accuracy_mean"], entry["bottom_decile_accuracy_mean"]
        assert len(worst) == len(decile) == len(entry["accuracy_mean"])
        assert all(0 <= w <= d <= 1 for w, d in zip(worst, decile))
