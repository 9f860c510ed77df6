"""Annotators in a real browser (headless Chromium driving Label Studio): each opens their queue,
clicks "Label All Tasks", and is served exactly their items, with nothing pre-ticked and nobody
else's label in sight, though both label the same items (overlap 2); their labels reach Redis as
theirs. Skips with a one-line reason where Chromium or playwright is absent.

Screenshots go to a temporary folder, or to $LOOP_SCREENSHOTS (docs/screenshots/ holds the ones
the README shows: `LOOP_SCREENSHOTS=docs/screenshots make test`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from loop.services.context import Context
from tests.helpers import REPO, cli
from tests.integration import browser

pytestmark = pytest.mark.integration

PEOPLE = {"erin": "erin-pass-123", "frank": "frank-pass-12"}


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return Path(os.environ.get("LOOP_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))


def label_queue(page, base: str, round_: dict, name: str, truth: dict[str, str], shot: Path | None) -> list[str]:
    """`name` labels every task their stream serves, with the true label; returns the items, in order.
    Asserts on each task that nothing is pre-ticked and no one's annotation is shown."""
    given = round_["assignments"][name]
    item_of_task = dict(zip(given["tasks"], given["items"]))
    task = browser.open_stream(page, base, given["queue"])
    served = []
    while task is not None:
        assert task in item_of_task, f"{name} was served task {task}, not one of theirs"
        item = item_of_task[task]
        assert browser.selected_choices(page) == [], f"{name}: an answer was pre-ticked on {item}"
        assert browser.visible_annotation_count(page) == 0, f"{name} saw someone's label on {item}"
        if shot is not None and not served:
            browser.screenshot(page, shot)
        served.append(item)
        task = browser.choose_and_submit(page, truth[item])
    assert browser.stream_finished(page)
    return served


def test_annotators_label_only_their_own_items_independently(stack_env, tmp_path, shots):
    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    ctx, base = Context(stack_env), stack_env.ls_url
    # 40 of the demo tickets, their texts changed a little so that they are new to the embedding
    # cache the end-to-end test counts on
    rows = [json.loads(line) for line in (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()[:40]]
    rows = [{**r, "id": f"b-{r['id']}", "text": f"{r['text']} (sent from the web form)"} for r in rows]
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    truth = {r["id"]: r["label"] for r in rows}
    guidelines = tmp_path / "guidelines"
    shutil.copytree(REPO / "guidelines", guidelines)
    p = cli("init", str(data), "--label-field", "label", "--guidelines", str(guidelines),
            "--title", "Browser test")["project_id"]
    for name, password in PEOPLE.items():
        cli("annotators", "add", name, "--password", password)
    round1 = cli("next-round", "--size", "4", "--annotators", "erin,frank", "--overlap", "2", "--project", str(p))

    with browser.launched() as chrome:
        pages = {}
        for name, password in PEOPLE.items():
            pages[name] = browser.new_page(chrome, base)
            browser.login(pages[name], base, f"{name}@loop.local", password)
        for name in PEOPLE:  # frank labels the items erin has just labelled: he must not see her labels
            served = label_queue(pages[name], base, round1, name, truth, shots / f"stream-{name}.png")
            assert sorted(served) == sorted(round1["assignments"][name]["items"])
        browser.screenshot(pages["frank"], shots / "stream-finished.png")

        # Their tab shows what they finished, and by whom (Label Studio fills those columns only
        # for a tab that lists its hidden columns: loop's does).
        erin = round1["assignments"]["erin"]
        browser.open_data_manager(pages["erin"], base, erin["queue"])
        rows = browser.table_rows(pages["erin"])
        assert len(rows) == 4 and all(r["tasks:completed_at"] and r["tasks:annotators"] == "ERIN" for r in rows)
        browser.screenshot(pages["erin"], shots / "queue-tab.png")

        # Round 2 has a model: its answers go to the main project (operators), never into a queue.
        round2 = cli("next-round", "--size", "2", "--annotators", "erin,frank", "--overlap", "2", "--project", str(p))
        assert round2["model_version"]
        scored = {pr["task"] for pr in ctx.ls.predictions(p) if pr["model_version"] == round2["model_version"]}
        assert set(round2["assignments"]["erin"]["main_tasks"]) <= scored
        assert label_queue(pages["erin"], base, round2, "erin", truth, shots / "stream-round2.png")
        # The instructions are the guideline rendered from markdown: headings, not "## Purpose".
        page = pages["erin"]
        page.get_by_role("button", name="Instructions").click()
        modal = page.locator(".lsf-modal-ls__body")  # LSF's instructions modal
        modal.get_by_role("heading", name="Purpose").wait_for()
        assert "## Purpose" not in modal.inner_text() and modal.locator("h3").count() >= 5  # one per label
        browser.screenshot(page, shots / "instructions.png")
        for name, page in pages.items():
            assert page.network.external == [], f"{name}'s page tried to reach {page.network.external}"

    status = cli("status", "--project", str(p))
    assert status["labels_outside"] == [] and status["labels_with_suggestion"] == 0
    records = [a for a in ctx.store.annotations(p).values()]
    made = {(a["annotator"], a["item_id"]) for a in records}
    expected = {(name, item) for name in PEOPLE for item in round1["assignments"][name]["items"]}
    assert made == expected | {("erin", item) for item in round2["assignments"]["erin"]["items"]}
    assert all(a["queue"] == a["annotator"] and not a["edited_by_other"] and not a["suggested"] for a in records)
    assert {a["label"] for a in records if a["annotator"] == "frank"} <= set(truth.values())
