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
