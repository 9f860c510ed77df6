"""An audit on the real stack: a round with a planted 10% error rate, audited blind in the
auditor's own queue (looked at in a real browser), gives the verdict "systemic" naming the label
that carries the errors; the disagreements wait for an adjudicator and change no label by themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loop.labels.interface import choice_result
from loop.services.context import Context
from loop.workflows import training
from tests.helpers import add_annotators, cli, ticket_project
from tests.integration import browser

pytestmark = pytest.mark.integration

PEOPLE = {"lena": "lena-pass-1234", "moss": "moss-pass-1234", "nora": "nora-pass-1234", "otto": "otto-pass-1234"}


def test_a_planted_error_rate_is_found_systemic_and_the_label_carrying_it_named(stack_env, tmp_path):
    ctx = Context(stack_env)
    p, truth, _ = ticket_project(tmp_path, slice(0, 50), "audit", "Audit test")
    clients = add_annotators(stack_env.ls_url, PEOPLE)

    round1 = cli("next-round", "--size", "50", "--annotators", "lena,moss", "--overlap", "2", "--project", str(p))
    items = round1["assignments"]["lena"]["items"]
    assert len(items) == 50
    # Plant 5 errors (10%): both annotators call five non-billing tickets "billing".
    planted = [i for i in items if truth[i] != "billing"][:5]
    for name in ("lena", "moss"):
        given = round1["assignments"][name]
        for item, task in zip(given["items"], given["tasks"]):
            clients[name].annotations.create(id=task, result=choice_result("billing" if item in planted
                                                                           else truth[item]))
    cli("status", "--project", str(p))  # syncs
    before = training.final_labels(ctx.store, p)
    assert all(before[i] == "billing" for i in planted)

    started = cli("audit", "start", "--auditor", "nora", "--sample", "50", "--round", "1", "--seed", "7",
                  "--project", str(p))
    assert sorted(started["sample"]) == sorted(items) and started["population"] == 50
    queue = ctx.ls.task_item_ids(started["ls_project"])
    assert sorted(queue) == sorted(items)

    # nora's audit tab in a real browser: the ticket's text, nothing chosen, nobody else's label.
    shots = Path(os.environ.get("LOOP_SCREENSHOTS") or tmp_path)
    answered_in_browser = set()
    if browser.unavailable() is None:
        with browser.launched() as chrome:
            page = browser.new_page(chrome, stack_env.ls_url)
            browser.login(page, stack_env.ls_url, "nora@loop.local", PEOPLE["nora"])
            task = browser.open_stream(page, stack_env.ls_url, started["ls_project"])
            assert task is not None and browser.selected_choices(page) == []
            assert browser.visible_annotation_count(page) == 0
            browser.screenshot(page, shots / "audit-stream.png")
            for _ in range(2):
                item = next(i for i, t in queue.items() if t == browser.current_task_id(page))
                answered_in_browser.add(item)
                browser.choose_and_submit(page, truth[item])
    for item, task in queue.items():
        if item not in answered_in_browser:
            clients["nora"].annotations.create(id=task, result=choice_result(truth[item]))

    report = cli("audit", "report", "--project", str(p))
    assert (report["n_answered"], report["n_errors"], report["verdict"]) == (50, 5, "systemic")
    assert report["carried_by"]["label"] == "billing" and report["accuracy"] == pytest.approx(0.9)
    low, high = report["interval"]
    assert low < 0.9 < high and high < 1.0
    assert sorted(d["item_id"] for d in report["disagreements"]) == sorted(planted)

    # Nothing changed by itself: the planted labels stand until an adjudicator rules.
    assert training.final_labels(ctx.store, p) == before
    status = cli("status", "--project", str(p))
    assert status["latest_audit"]["verdict"] == "systemic" and status["disputed_by_audit"] == 5
    judged = cli("adjudicate", "--adjudicator", "otto", "--project", str(p))
    assert sorted(judged["assigned"]) == sorted(planted)
    otto = ctx.ls.task_item_ids(judged["ls_project"])
    for item in planted:
        clients["otto"].annotations.create(id=otto[item], result=choice_result(truth[item]))
    cli("status", "--project", str(p))  # syncs
    after = training.final_labels(ctx.store, p)
    assert all(after[i] == truth[i] for i in planted) and cli("status", "--project", str(p))["disputed_by_audit"] == 0
