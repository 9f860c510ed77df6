"""A round in detail (who got which item, by item and task id) and the training policy in status."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loop.errors import ConfigError
from loop.labels.attribution import epoch
from loop.workflows.status import round_detail, round_status, status
from loop.workflows.training import set_policy
from tests.helpers import stamp

P = 8


@pytest.fixture
def ctx(redis_store, fake_ls):
    store = redis_store
    store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    store.add_items(P, {f"i{i}": {"task_id": 100 + i, "key": f"h{i}"} for i in range(6)})
    store.add_annotator({"name": "alice", "ls_user_id": 5})
    store.add_annotator({"name": "bob", "ls_user_id": 6})
    store.plan_round(P, {"id": 1, "size": 3, "overlap": 2, "scores": {"i0": ["pos", 0.6]}},
                     {"i0": ["alice", "bob"], "i2": ["alice", "bob"], "i4": ["alice", "bob"]})
    return SimpleNamespace(store=store, ls=fake_ls)


def test_round_detail_lists_each_annotators_items_and_tasks(ctx):
    detail = round_detail(ctx.store, P, 1)
    assert "scores" not in detail and detail["id"] == 1
    unpublished = {"items": ["i0", "i2", "i4"], "queue": None, "tasks": [None, None, None],
                   "main_tasks": [100, 102, 104], "relabels": {"items": [], "tasks": []},
                   "controls": {"items": [], "tasks": []}, "done": 0,
                   "owed": ["i0", "i2", "i4"]}
    assert detail["assignments"] == {"alice": unpublished, "bob": unpublished}
    ctx.store.add_queue(P, "alice", 40)
    ctx.store.add_queue_tasks(P, "alice", {"i0": 400, "i2": 402, "i4": 404})
    alice = round_detail(ctx.store, P, 1)["assignments"]["alice"]
    assert alice["queue"] == 40 and alice["tasks"] == [400, 402, 404]


def test_round_status_syncs_first_and_shows_who_still_owes(ctx):
    ctx.ls.annotate(102, 1, "pos", stamp(1), user=5)  # alice labels i2
    detail = round_status(ctx, P, 1)
    assert detail["synced"]["added"] == 1
    assert detail["assignments"]["alice"]["done"] == 1 and detail["assignments"]["alice"]["owed"] == ["i0", "i4"]
    assert detail["assignments"]["bob"]["done"] == 0


def test_an_unknown_round_says_which_exist(ctx):
    with pytest.raises(ConfigError, match=r"round 4 does not exist \(rounds: 1\)"):
        round_detail(ctx.store, P, 4)


def test_status_shows_the_training_policy(ctx):
    ctx.ls.annotate(100, 1, "pos", stamp(1), user=5)
    set_policy(ctx.store, P, guideline_version=3)
    s = status(ctx, P)
    assert s["training_policy"]["guideline_version"] == 3 and "guideline v3" in s["training_policy"]["description"]
    assert s["items_labelled"] == 1 and s["training_items"] == 0  # the label was stamped with no version


def test_status_reports_labels_left_out_edited_by_others_and_changed_after_their_round_closed(ctx):
    store = ctx.store
    store.add_annotator({"name": "carol", "ls_user_id": 7})
    ctx.ls.annotate(100, 1, "pos", stamp(1), user=5, suggested=True)   # alice on i0: sent to her, a suggestion shown
    ctx.ls.annotate(101, 2, "neg", stamp(2), user=7)                   # carol on i1: nobody sent it to her
    ctx.ls.annotate(102, 3, "neg", stamp(3), user=5, updated_by=6)     # bob changed alice's label on i2
    store.close_round(P, 1)
    store.update_round(P, 1, closed_at=epoch(stamp(2)) + 0.5)          # the round closed between stamps 2 and 3
    s = status(ctx, P)
    assert [(o["id"], o["annotator"], o["reason"]) for o in s["labels_outside"]] == [
        ("2", "carol", "carol was not sent this item")]
    assert [(e["id"], e["annotator"], e["created_by"]) for e in s["labels_edited_by_other"]] == [("3", "bob", "alice")]
    assert [(c["id"], c["round"]) for c in s["labels_changed_after_close"]] == [("3", 1)]
    assert s["labels_with_suggestion"] == 1 and s["labels_spent"] == 2  # carol's label is not spent budget
    assert sum(1 for w in s["warnings"] if "left out of training" in w or "changed by someone other" in w
               or "after their round closed" in w) == 3


def test_agreement_says_how_many_labels_were_made_with_a_suggestion_shown(ctx):
    from loop.workflows.agreement import project_agreement

    ctx.ls.annotate(100, 1, "pos", stamp(1), user=5, suggested=True)
    ctx.ls.annotate(100, 2, "pos", stamp(2), user=6)
    report = project_agreement(ctx, P)
    assert report["labels_with_suggestion"] == 1 and report["percent_agreement"]["value"] == 1.0
    assert any("1 of 2 labels were made with the model's answer shown" in w for w in report["warnings"])


def _rounds_with_kappas(store, kappas, spent):
    for n, (kappa, labels) in enumerate(zip(kappas, spent), start=2):
        store.plan_round(P, {"id": n, "size": 0, "overlap": 1}, {})
        metrics = {"n_labels": labels, "kappa": kappa} | ({"labels_spent": labels} if labels is not None else {})
        store.update_round(P, n, metrics=metrics)


def test_status_reads_the_stop_rule_per_label_as_simulate_does(ctx):
    # Rounds of 100 labels whose kappa stays at 0.985: the per-round rule (mean kappa >= 0.99) never
    # fires, while 0.015 / 100 = 1.5e-4 disagreement per label is under the rule's 2.25e-4.
    _rounds_with_kappas(ctx.store, [None] + [0.985] * 11, [100 * (k + 1) for k in range(12)])
    stop = status(ctx, P)["stop"]
    assert stop["recommend"] and "per new label" in stop["kappa"]["reason"]
    assert stop["rule"]["disagreement_per_label"] == pytest.approx(2.25e-4)


def test_status_falls_back_to_the_per_round_rule_for_rounds_without_labels_spent(ctx):
    _rounds_with_kappas(ctx.store, [None] + [0.985] * 11, [None] * 12)
    stop = status(ctx, P)["stop"]
    assert not stop["recommend"] and "mean kappa 0.985" in stop["kappa"]["reason"]
