"""`loop gold add|promote|list` through the CLI on the sample project (real Redis through REDIS_URL):
JSON out, and a bad row as one error line with nothing written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from tests.cli.conftest import one_error_line
from tests.curation.sample_project import ITEMS, JUDGE, P, build_project


@pytest.fixture
def env(clean_env, redis_server, redis_store, tmp_path, monkeypatch):
    build_project(redis_store, tmp_path)
    monkeypatch.setenv("REDIS_URL", f"unix://{redis_server.socket_file}")
    return SimpleNamespace(tmp=tmp_path, store=redis_store)


def run(*args):
    return CliRunner().invoke(app, list(args))


def test_gold_add_promote_and_list(env):
    expert = env.tmp / "expert.csv"
    # it05 by id; the second row by its text (another id): both are items of the project already
    expert.write_text("id,body,verdict\nit05,whatever,out_of_scope\n"
                      f"x-1,\"{ITEMS['it13'][0]}\",billing\n", encoding="utf-8")
    added = run("gold", "add", str(expert), "--text-field", "body", "--label-field", "verdict",
                "--project", str(P), "--json")
    assert added.exit_code == 0, added.output
    r = json.loads(added.stdout)
    assert (r["added"], r["existing_items"], r["new_items"], r["gold"]) == (2, 2, 0, 2)
    assert r["no_longer_trained_on"] == 2  # both had labels the models learnt from
    promoted = json.loads(run("gold", "promote", "--project", str(P), "--json").stdout)
    assert promoted["promoted_items"] == [JUDGE[0]] and promoted["gold"] == 3
    listed = run("gold", "list", "--project", str(P), "--json")
    assert listed.exit_code == 0, listed.output
    g = json.loads(listed.stdout)
    assert g["count"] == 3 and g["sources"] == {"adjudicated": 1, "file:expert.csv": 2}
    assert g["per_label"]["billing"] == 1 and g["per_label"][JUDGE[1]] == 1 and g["per_label"]["out_of_scope"] == 1
    assert {i["id"]: i["label"] for i in g["items"]} == {"it05": "out_of_scope", "it13": "billing", JUDGE[0]: JUDGE[1]}
    table = run("gold", "list", "--project", str(P))
    assert table.exit_code == 0 and "3 gold items" in table.stdout


def test_a_label_outside_the_set_is_one_error_line_and_nothing_is_written(env):
    expert = env.tmp / "expert.jsonl"
    expert.write_text(json.dumps({"id": "it05", "text": "x", "label": "out_of_scope"}) + "\n"
                      + json.dumps({"id": "it06", "text": "y", "label": "refunds"}) + "\n", encoding="utf-8")
    result = run("gold", "add", str(expert), "--project", str(P))
    one_error_line(result, "expert.jsonl:2", "'label' field is 'refunds'", "billing")
    assert env.store.gold(P) == {}


def test_the_status_table_shows_measured_accuracy_next_to_the_estimated_one():
    from rich.console import Console

    from loop.cli.output import reliability_table

    base = {"n": 10, "n_labels": 10, "agreement_with_consensus": 0.9, "estimated_accuracy": 0.88,
            "accuracy_interval": [0.7, 0.95], "n_evidence": 10, "flags": [], "warnings": []}
    console = Console(width=250, record=True)
    console.print(reliability_table({"ann": {**base, "gold_n": 10, "gold_correct": 8, "gold_accuracy": 0.8,
                                             "gold_interval": [0.49, 0.94]},
                                     "bob": {**base, "gold_n": 0, "gold_accuracy": None, "gold_interval": None}}, "t"))
    text = console.export_text()
    assert "measured on gold" in text and "80% of 10 (49%-94%)" in text
    console = Console(width=250, record=True)
    console.print(reliability_table({"bob": {**base, "gold_n": 0}}, "t"))  # no control answered: no column
    assert "measured on gold" not in console.export_text()
