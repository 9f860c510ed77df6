"""Relabel on the real stack: a contested item gets a third label, through `next-round --relabel`,
from an annotator who had not labelled it, in her own queue; the trainer learns from it."""

from __future__ import annotations

import time

import pytest

from loop.labels.interface import choice_result
from loop.services.context import Context
from loop.workflows import training
from tests.helpers import add_annotators, cli, ticket_project

pytestmark = pytest.mark.integration

PEOPLE = {"ivy": "ivy-pass-1234", "jack": "jack-pass-123", "kim": "kim-pass-1234"}


def test_a_contested_item_gets_a_third_label_and_the_trainer_uses_it(stack_env, tmp_path):
    ctx = Context(stack_env)
    p, truth, _ = ticket_project(tmp_path, slice(80, 120), "relabel", "Relabel test")
    clients = add_annotators(stack_env.ls_url, PEOPLE)

    round1 = cli("next-round", "--size", "6", "--annotators", "ivy,jack", "--overlap", "2", "--project", str(p))
    items = round1["assignments"]["ivy"]["items"]
    contested = next(i for i in items if truth[i] != "billing")
    for name in ("ivy", "jack"):
        given = round1["assignments"][name]
        for item, task in zip(given["items"], given["tasks"]):
            value = "billing" if (name, item) == ("jack", contested) else truth[item]  # jack disagrees once
            clients[name].annotations.create(id=task, result=choice_result(value))

    round2 = cli("next-round", "--size", "4", "--annotators", "ivy,jack,kim", "--overlap", "2", "--relabel", "1",
                 "--project", str(p))
    kim = round2["assignments"]["kim"]
    assert round2["relabel"]["items"] == 1 and kim["relabels"]["items"] == [contested]
    assert contested in ctx.ls.task_item_ids(kim["queue"])  # a task in kim's own queue; she never saw the others'
    clients["kim"].annotations.create(id=kim["relabels"]["tasks"][0], result=choice_result(truth[contested]))

    # The trainer (woken by kim's webhook) retrains on the item's new majority, without any CLI command.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        labels = training.final_labels(ctx.store, p)
        model = ctx.store.load_model(p)
        if labels.get(contested) == truth[contested] and model is not None \
                and model.training_digest == training.training_set(ctx.store, ctx.vectors, p).digest:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the trainer did not learn kim's label: {training.final_labels(ctx.store, p)[contested]}")
    status = cli("status", "--round", "2", "--project", str(p))
    kim = status["assignments"]["kim"]
    assert kim["relabels"]["items"] == [contested] and kim["done"] == 1
