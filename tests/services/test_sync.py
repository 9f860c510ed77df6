"""`sync_annotations` (the CLI's sync) on a real Redis and a plain fake of Label Studio: the first
read is the export, later ones only the changed tasks, and a count check falls back to the export."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loop.services.sync import AnnotationRejected, sync_annotations
from tests.helpers import stamp

P = 4


@pytest.fixture
def ctx(redis_store, fake_ls):
    redis_store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    redis_store.add_items(P, {f"i{i}": {"task_id": 100 + i, "key": f"h{i}"} for i in range(5)})
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    return SimpleNamespace(store=redis_store, ls=fake_ls)


def labels(store):
    return {a["item_id"]: a["label"] for a in store.annotations(P).values()}


def test_first_sync_exports_then_only_changed_tasks_are_read(ctx):
    ctx.ls.annotate(100, 1, "neg", stamp(1))
    ctx.ls.annotate(101, 2, "pos", stamp(2))
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 2, "updated": 0, "removed": 0}
    assert ctx.ls.calls == [("export", None)] and ctx.store.synced_at(P) == stamp(2)

    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 0, "updated": 0, "removed": 0}  # idempotent
    ctx.ls.annotate(101, 2, "neg", stamp(7))
    ctx.ls.annotate(102, 3, "pos", stamp(8))
    ctx.ls.delete(100, 1, stamp(9))
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 1, "updated": 1, "removed": 1}
    assert [c[0] for c in ctx.ls.calls] == ["export", "changed", "changed"]
    assert labels(ctx.store) == {"i1": "neg", "i2": "pos"}


def test_a_deleted_task_is_caught_by_the_count_and_the_export(ctx):
    ctx.ls.annotate(100, 1, "neg", stamp(1))
    ctx.ls.annotate(101, 2, "pos", stamp(2))
    sync_annotations(ctx.store, ctx.ls, P)
    ctx.ls.drop_task(101)
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 0, "updated": 0, "removed": 1}
    assert [c[0] for c in ctx.ls.calls] == ["export", "changed", "export"]
    assert labels(ctx.store) == {"i0": "neg"}


def test_an_unknown_label_fails_the_sync_with_nothing_written(ctx):
    ctx.ls.annotate(100, 1, "neg", stamp(1))
    sync_annotations(ctx.store, ctx.ls, P)
    ctx.ls.annotate(101, 2, "pos", stamp(3))
    ctx.ls.annotate(102, 3, "maybe", stamp(4))
    with pytest.raises(AnnotationRejected, match="'maybe'"):
        sync_annotations(ctx.store, ctx.ls, P)
    assert labels(ctx.store) == {"i0": "neg"} and ctx.store.synced_at(P) == stamp(1)


def test_every_queue_is_read_and_each_label_is_attributed_to_who_last_wrote_it(ctx):
    """The main project and bob's queue (Label Studio project 40) are read, each with its own mark;
    a label carries its project, its queue's owner, and whether a suggestion was shown."""
    ctx.store.add_annotator({"name": "bob", "ls_user_id": 6})
    ctx.store.add_queue(P, "bob", 40)
    ctx.store.add_queue_tasks(P, "bob", {"i1": 401})
    ctx.ls.annotate(100, 1, "neg", stamp(1))  # alice, in the main project (task 100 is i0)
    ctx.ls.tasks[100]["project"] = P
    ctx.ls.annotate(401, 2, "pos", stamp(2), user=6, suggested=True)  # bob, in his queue
    ctx.ls.tasks[401]["project"] = 40
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 2, "updated": 0, "removed": 0}
    stored = ctx.store.annotations(P)
    assert (stored["1"]["ls_project"], stored["1"]["queue"], stored["1"]["suggested"]) == (P, None, False)
    assert (stored["2"]["item_id"], stored["2"]["ls_project"], stored["2"]["queue"]) == ("i1", 40, "bob")
    assert stored["2"]["suggested"] and stored["2"]["annotator"] == "bob" and not stored["2"]["edited_by_other"]
    assert ctx.store.synced_at(P) == stamp(1) and ctx.store.synced_at(P, 40) == stamp(2)

    ctx.ls.annotate(401, 2, "neg", stamp(5), user=6, updated_by=5)  # alice overwrote bob's label in his queue
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 0, "updated": 1, "removed": 0}
    edited = ctx.store.annotations(P)["2"]
    assert (edited["annotator"], edited["created_by"], edited["edited_by_other"]) == ("alice", "bob", True)
    assert [c for c in ctx.ls.calls if c[0] == "export"] == [("export", None), ("export", None)]  # once per project


def test_a_deleted_queue_task_is_caught_by_that_queues_count(ctx):
    ctx.store.add_queue(P, "alice", 40)
    ctx.store.add_queue_tasks(P, "alice", {"i1": 401, "i2": 402})
    for task, ann in ((401, 1), (402, 2)):
        ctx.ls.annotate(task, ann, "pos", stamp(ann))
        ctx.ls.tasks[task]["project"] = 40
    sync_annotations(ctx.store, ctx.ls, P)
    ctx.ls.drop_task(402)
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 0, "updated": 0, "removed": 1}
    assert labels(ctx.store) == {"i1": "pos"}


def test_a_project_with_nothing_labelled_is_exported_once_not_at_every_sync(ctx):
    ctx.ls.tasks[100] = {"id": 100, "annotations": [], "updated_at": stamp(3)}  # a task, no label yet
    assert sync_annotations(ctx.store, ctx.ls, P) == {"added": 0, "updated": 0, "removed": 0}
    assert ctx.store.synced_at(P) == stamp(3)  # the newest task: the next read starts there
    sync_annotations(ctx.store, ctx.ls, P)
    assert [c[0] for c in ctx.ls.calls] == ["export", "changed"]
