"""Annotators' queues on a real Redis and the fake Label Studio: one project per annotator holding
only their items, made once, filled once, and found again after a crash."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loop.core.dataset import text_key
from loop.errors import ConfigError
from loop.labels.interface import QUEUE_TAB
from loop.workflows.adjudicate import accept
from loop.workflows.queues import enqueue, ensure_queue, queue_title
from loop.workflows.rounds import _close_previous, _publish, next_round
from tests.helpers import stamp

P = 11
TEXTS = {f"i{n}": f"text number {n}" for n in range(6)}


@pytest.fixture
def ctx(redis_store, fake_ls):
    store = redis_store
    store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    store.add_items(P, {i: {"task_id": 100 + n, "key": text_key(t)} for n, (i, t) in enumerate(TEXTS.items())},
                    texts=TEXTS)
    for n, name in enumerate(("alice", "bob")):
        store.add_annotator({"name": name, "ls_user_id": 5 + n})
    fake_ls.project(P)["title"] = "Tickets"
    settings = SimpleNamespace(backend_url="http://backend.test", backend_auth=None, ls_url="http://ls.test")
    return SimpleNamespace(store=store, ls=fake_ls, settings=settings, project_id=lambda explicit=None: P,
                           workspace=SimpleNamespace(backend_login=lambda: ("label-studio", "secret")))


def test_a_queue_is_a_project_of_its_own_made_once(ctx):
    q = ensure_queue(ctx, P, "alice")
    made = ctx.ls.projects[q]
    assert made["title"] == queue_title("Tickets", "alice") == "Tickets · alice"
    assert made["labels"] == ["neg", "pos"] and made["show_collab_predictions"] is False  # nothing pre-ticked
    assert ctx.ls.webhooks[q] == f"http://backend.test/webhook?project={P}&ls_project={q}"
    assert ctx.ls.views[q]["title"] == QUEUE_TAB and ctx.ls.views[q]["hidden_columns"]
    assert ensure_queue(ctx, P, "alice") == q and len(ctx.ls.projects) == 2  # the main project and this queue


def test_a_queue_made_by_a_run_that_died_before_recording_it_is_found_by_its_title(ctx):
    orphan = ctx.ls.create_project("Tickets · bob", ["neg", "pos"])
    assert ensure_queue(ctx, P, "bob") == orphan


def test_items_are_imported_once_with_their_text_and_found_again_after_a_crash(ctx):
    sent = enqueue(ctx, P, "alice", ["i0", "i2"], round=1)
    q = sent["ls_project"]
    assert sent["url"] == f"http://ls.test/projects/{q}/data"
    assert [ctx.ls.tasks[t]["data"] for t in sent["tasks"]] == [
        {"text": "text number 0", "item_id": "i0", "round": 1}, {"text": "text number 2", "item_id": "i2", "round": 1}]
    assert enqueue(ctx, P, "alice", ["i2", "i0"])["tasks"] == sent["tasks"][::-1]  # nothing imported twice
    assert ctx.store.items_for_tasks(P, sent["tasks"]) == dict(zip(sent["tasks"], ["i0", "i2"]))
    # a run imported i4 and died before recording it: the next run takes that task
    (lost,) = ctx.ls.import_tasks(q, [{"text": "text number 4", "item_id": "i4"}])
    assert enqueue(ctx, P, "alice", ["i4"])["tasks"] == [lost]
    assert len([t for t in ctx.ls.tasks.values() if t.get("project") == q]) == 3


def test_publishing_a_round_sends_each_annotator_exactly_their_items(ctx):
    record = {"id": 1, "overlap": 2, "model_version": "v1", "scores": {"i1": ["pos", 0.7], "i3": ["neg", 0.6]}}
    assignments = {"i1": ["alice", "bob"], "i3": ["alice", "bob"]}
    ctx.store.plan_round(P, record, assignments)
    _publish(ctx, P, record, assignments)
    opened = ctx.store.round(P, 1)
    assert opened["status"] == "open" and set(opened["queues"]) == {"alice", "bob"}
    for name in ("alice", "bob"):
        q = opened["queues"][name]["ls_project"]
        assert sorted(t["data"]["item_id"] for t in ctx.ls.tasks.values() if t.get("project") == q) == ["i1", "i3"]
        assert ctx.ls.predictions(q) == []  # not assisted: no model answer in an annotator's queue
    assert {pr["task"] for pr in ctx.ls.predictions(P)} == {101, 103}  # scores for operators in the main project


def test_an_assisted_project_shows_the_model_only_to_a_single_annotator(ctx):
    ctx.store.save_project(P, {"assisted": True}, make_current=False)
    with pytest.raises(ConfigError, match="assisted labelling.*--overlap 1"):
        next_round(ctx, P, size=2, annotators=["alice", "bob"], overlap=2)
    record = {"id": 1, "overlap": 1, "model_version": "v1", "scores": {"i1": ["pos", 0.7]}}
    ctx.store.plan_round(P, record, {"i1": ["alice"]})
    _publish(ctx, P, record, {"i1": ["alice"]})
    q = ctx.store.round(P, 1)["queues"]["alice"]["ls_project"]
    assert [(pr["result"][0]["value"]["choices"], pr["score"]) for pr in ctx.ls.predictions(q)] == [(["pos"], 0.7)]
    assert ctx.ls.projects[q]["show_collab_predictions"] is True


def test_closing_a_round_says_which_items_got_fewer_labels_than_the_overlap(ctx):
    record = {"id": 1, "overlap": 2}
    ctx.store.plan_round(P, record, {"i1": ["alice", "bob"], "i2": ["alice", "bob"]})
    ctx.store.update_round(P, 1, status="open")
    labels = [{"id": "1", "item_id": "i1", "annotator": "alice", "label": "pos"},
              {"id": "2", "item_id": "i1", "annotator": "bob", "label": "pos"},
              {"id": "3", "item_id": "i2", "annotator": "alice", "label": "neg"},
              {"id": "4", "item_id": "i2", "annotator": "bob", "label": None, "skipped": True}]  # done, no label
    summary = _close_previous(ctx, P, labels, close_incomplete=False)
    assert summary["short"] == 1 and summary["short_items"] == ["i2"] and summary["owed"] == {}


def test_items_a_closed_round_released_leave_their_annotators_queues(ctx):
    record = {"id": 1, "overlap": 2}
    assignments = {"i1": ["alice", "bob"], "i2": ["alice", "bob"]}
    ctx.store.plan_round(P, record, assignments)
    _publish(ctx, P, record, assignments)
    queue = ctx.store.round(P, 1)["queues"]["alice"]["ls_project"]
    labels = [{"id": "1", "item_id": "i1", "annotator": "alice", "label": "pos"}]  # nobody labelled i2
    summary = _close_previous(ctx, P, labels, close_incomplete=True)
    assert summary["released"] == 1 and "i2" not in ctx.store.assigned(P)
    for name in ("alice", "bob"):
        assert set(ctx.store.queue_tasks(P, name)) == {"i1"}
    assert sorted(t["data"]["item_id"] for t in ctx.ls.tasks.values() if t.get("project") == queue) == ["i1"]


def test_an_operator_accepts_labels_left_out(ctx):
    ctx.store.plan_round(P, {"id": 1}, {"i1": ["alice"]})
    ctx.ls.annotate(101, 7, "pos", stamp(1), user=6)  # bob labels alice's item in the main project
    ctx.ls.tasks[101]["project"] = P
    with pytest.raises(ConfigError, match="not a label left out"):
        accept(ctx, P, ["99"])
    with pytest.raises(ConfigError, match="or --all, not both"):
        accept(ctx, P, ["7"], every=True)
    result = accept(ctx, P, ["7"])
    assert [r["id"] for r in result["accepted"]] == ["7"] and result["still_outside"] == 0
    assert ctx.store.accepted(P) == {"7"}
