"""Whose label is it, may it count, and did it change after its round closed."""

from __future__ import annotations

from loop.labels.attribution import assigned_to, changed_after_close, epoch, outside_reason, split


def rec(aid, item, who, *, queue=None, at="2026-11-22T10:00:00.000000Z"):
    return {"id": aid, "item_id": item, "annotator": who, "label": "a", "queue": queue, "updated_at": at}


SENT = assigned_to([{"i1": ["alice", "bob"]}, {"i2": ["alice"]}], {"i3": {"adjudicator": "dana"}})


def test_everyone_sent_an_item_by_a_round_or_as_its_adjudicator():
    assert SENT == {"i1": {"alice", "bob"}, "i2": {"alice"}, "i3": {"dana"}}


def test_a_label_counts_when_its_author_was_sent_the_item_in_their_own_queue():
    assert outside_reason(rec("1", "i1", "bob", queue="bob"), SENT) is None
    assert outside_reason(rec("2", "i3", "dana", queue="dana"), SENT) is None
    assert outside_reason(rec("3", "i1", "alice"), SENT) is None  # in the main project, but sent to her


def test_labels_nobody_sent_or_in_someone_elses_queue_are_left_out_with_the_reason():
    assert outside_reason(rec("4", "i2", "bob"), SENT) == "bob was not sent this item"
    assert outside_reason(rec("5", "i1", "bob", queue="alice"), SENT) == "made in alice's queue by bob"
    counted, outside = split([rec("1", "i1", "bob", queue="bob"), rec("4", "i2", "bob"),
                              rec("5", "i1", "bob", queue="alice")], SENT, accepted=["5"])
    assert [r["id"] for r in counted] == ["1", "5"]  # 5 was accepted by an operator
    assert outside == [{"id": "4", "item_id": "i2", "annotator": "bob", "label": "a", "queue": None,
                        "reason": "bob was not sent this item"}]


def test_labels_changed_after_their_round_closed():
    closed = epoch("2026-11-22T10:00:05Z")
    late = changed_after_close([rec("1", "i1", "bob", at="2026-11-22T10:00:09.5Z"),
                                rec("2", "i1", "alice", at="2026-11-22T10:00:01Z"),
                                rec("3", "i9", "alice", at="2026-11-22T10:00:09Z")],  # i9: in no round
                               round_of={"i1": 1}, closed_at={1: closed})
    assert [(r["id"], r["round"]) for r in late] == [("1", 1)]


def test_epoch_reads_label_studio_timestamps():
    assert epoch("2026-11-22T10:00:01.500000Z") - epoch("2026-11-22T10:00:00Z") == 1.5
    assert epoch(None) is None and epoch("not a time") is None and epoch(12.0) == 12.0
