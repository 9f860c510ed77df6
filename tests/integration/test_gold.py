"""The gold set on the real stack: gold items (matched by text, and new ones) are never selected in
five rounds, each round's gold accuracy is in the learning curve, and control items reach the
annotators' queues, where their answers give each one's measured accuracy and count nowhere else."""

from __future__ import annotations

import json

import pytest

from loop.labels.interface import choice_result
from loop.services.context import Context
from tests.helpers import REPO, add_annotators, cli, ticket_project

pytestmark = pytest.mark.integration

PEOPLE = {"lia": "lia-pass-12345", "max": "max-pass-12345"}
WRONG = {"billing": "delivery", "delivery": "billing", "account": "technical", "technical": "account",
         "out_of_scope": "billing"}


def test_gold_is_never_selected_and_measures_models_and_annotators(stack_env, tmp_path):
    ctx = Context(stack_env)
    lines = (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()
    p, truth, rows = ticket_project(tmp_path, slice(200, 240), "g", "Gold test")
    # six items of the project (matched by text, under other ids) and two new ones, with expert labels
    expert = tmp_path / "expert.jsonl"
    extra = [json.loads(line) for line in lines[300:302]]
    expert.write_text("".join(json.dumps({"id": f"expert-{k}", "text": f"{r['text']} (g)", "label": r["label"]})
                              + "\n" for k, r in enumerate(rows[:6]))
                      + "".join(json.dumps({"id": f"new-{r['id']}", "text": f"{r['text']} (new gold)",
                                            "label": r["label"]}) + "\n" for r in extra))
    added = cli("gold", "add", str(expert), "--project", str(p))
    assert (added["existing_items"], added["new_items"], added["gold"]) == (6, 2, 8)
    gold = {i["id"]: i["label"] for i in cli("gold", "list", "--project", str(p))["items"]}
    truth |= gold
    assert set(gold) == {f"g-{r['id']}" for r in rows[:6]} | {f"new-{r['id']}" for r in extra}
    assert all(ctx.store.items(p)[f"new-{r['id']}"]["task_id"] for r in extra)  # tasks in the main project

    clients = add_annotators(stack_env.ls_url, PEOPLE)
    chosen, controls_seen = set(), {name: [] for name in PEOPLE}
    for _ in range(5):
        r = cli("next-round", "--size", "4", "--annotators", "lia,max", "--overlap", "1", "--gold-rate", "0.25",
                "--project", str(p))
        for name, given in r["assignments"].items():
            chosen |= set(given["items"])
            for item, task in zip(given["items"], given["tasks"]):
                clients[name].annotations.create(id=task, result=choice_result(truth[item]))
            control, tasks = given["controls"]["items"], given["controls"]["tasks"]
            assert len(control) == 1 and control[0] in gold and control[0] not in controls_seen[name]
            assert control[0] in ctx.ls.task_item_ids(given["queue"])  # in their own queue, like any item
            controls_seen[name] += control
            # lia answers her controls rightly, max wrongly
            answer = gold[control[0]] if name == "lia" else WRONG[gold[control[0]]]
            clients[name].annotations.create(id=tasks[0], result=choice_result(answer))
    assert len(chosen) == 20 and not chosen & set(gold)  # never selected in five rounds

    status = cli("status", "--project", str(p))
    scored = [c for c in status["learning_curve"] if c.get("gold_accuracy") is not None]
    assert scored and all(c["gold_n"] == 8 and 0 <= c["gold_macro_f1"] <= 1 for c in scored)
    assert status["labels_spent"] == 20 and status["labels_outside"] == []  # control answers are no labels
    lia, mx = status["annotators"]["lia"], status["annotators"]["max"]
    assert (lia["gold_n"], lia["gold_accuracy"]) == (5, 1.0) and (mx["gold_n"], mx["gold_accuracy"]) == (5, 0.0)
    assert lia["gold_interval"][0] > 0.5 > mx["gold_interval"][1]
    assert status["gold"]["count"] == 8 and status["training_items"] == 20
