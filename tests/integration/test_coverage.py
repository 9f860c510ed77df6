"""`loop coverage` on the real stack: a project labelled over two rounds in Label Studio, a gold set,
and a production sample that sends a region no label covers (crypto). The report flags that region
first, clusters the model's mistakes on gold, draws the map; `loop status` shows the one-line summary,
the data card its Coverage section, and `loop validate --reference` the shift against production."""

from __future__ import annotations

import json

import pytest

from loop.labels.interface import choice_result
from tests.helpers import add_annotators, cli, ticket_project

pytestmark = pytest.mark.integration

PEOPLE = {"vesna": "vesna-pass-1234", "wolf": "wolf-pass-12345"}
CRYPTO = ["How do I move my bitcoin to a hardware wallet?", "Can I buy ethereum with my balance?",
          "Why is my crypto withdrawal still pending?", "What fee do you charge to sell bitcoin?",
          "My crypto wallet address was rejected.", "How long does a bitcoin transfer take to confirm?"]
WRONG = {"billing": "delivery", "delivery": "billing", "account": "technical", "technical": "account",
         "out_of_scope": "billing"}


def test_coverage_on_a_labelled_project(stack_env, tmp_path):
    p, truth, rows = ticket_project(tmp_path, slice(330, 390), "covr", "Coverage report test")
    # Gold: four items with their true label and two with a wrong one, so the model errs on gold for sure.
    gold_rows = [{"id": f"covr-{r['id']}", "text": f"{r['text']} (covr)",
                  "label": WRONG[r["label"]] if k < 2 else r["label"]} for k, r in enumerate(rows[:6])]
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text("".join(json.dumps(r) + "\n" for r in gold_rows))
    assert cli("gold", "add", str(gold_file), "--project", str(p))["gold"] == 6
    clients = add_annotators(stack_env.ls_url, PEOPLE)
    for _ in range(2):
        r = cli("next-round", "--size", "10", "--annotators", "vesna,wolf", "--overlap", "2", "--project", str(p))
        for name, given in r["assignments"].items():
            for n, (item, task) in enumerate(zip(given["items"], given["tasks"])):
                # wolf gives a wrong label on every fourth item: some disagreement to measure
                label = WRONG[truth[item]] if name == "wolf" and n % 4 == 0 else truth[item]
                clients[name].annotations.create(id=task, result=choice_result(label))
    cli("next-round", "--size", "2", "--annotators", "vesna,wolf", "--overlap", "1", "--project", str(p))  # a model

    production = tmp_path / "production.jsonl"
    # The crypto texts are this test's own (no other test sends them); untagged, so they stand apart.
    traffic = [f"{r['text']} (covr)" for r in rows[6:30]] + CRYPTO * 4
    production.write_text("".join(json.dumps({"text": t}) + "\n" for t in traffic))
    png = tmp_path / "map.png"
    report = cli("coverage", "--production", str(production), "--plot", str(png), "--k", "10", "--project", str(p))
    assert report["project_id"] == p and report["pool"] == 54 and report["production"] == 48
    assert report["labelled"] == 20  # the two rounds' items, one label each after aggregation
    first = report["flags"]["under_covered"][0]
    gap = report["clusters"][first["cluster"]]
    assert gap["labelled"] == 0 and gap["production"] >= 8 and sum(t in CRYPTO for t in gap["examples"]) >= 2
    assert report["negatives"] == ["out_of_scope"]
    assert report["flags"]["overall_agreement"] is not None and report["flags"]["overall_agreement"] < 1
    assert report["shift"]["test"]["status"] == "done"
    errors = report["errors"]
    assert errors["sources"] == {"gold": 6} and errors["errors"] >= 1 and report["model_version"]
    planted = {f"{r['text']} (covr)" for r in rows[:2]}
    shown = {x["text"] for e in errors["by_pair"] for x in e["examples"]}
    assert planted & shown and errors["by_pair"][0]["errors"] >= errors["by_pair"][-1]["errors"]
    assert png.read_bytes()[:4] == b"\x89PNG"

    status = cli("status", "--project", str(p))
    assert status["coverage"]["under_covered"] == len(report["flags"]["under_covered"])
    assert "under-labelled" in status["coverage"]["line"]

    out = tmp_path / "export"
    cli("export", str(out), "--project", str(p))
    section = (out / "README.md").read_text().split("## Coverage", 1)[1].split("\n## ", 1)[0]
    assert "production (`production.jsonl`)" in section and "on 20 labelled items" in section
    assert "Under-labelled clusters" in section

    checked = cli("validate", "--project", str(p), "--reference", str(production), "--no-label-errors")
    assert checked["shift"]["reference"] == str(production) and checked["shift"]["test"]["status"] == "done"
