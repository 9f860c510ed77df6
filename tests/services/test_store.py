"""The Redis store: key shapes, round trips, idempotent sync, atomic round planning, model snapshots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loop.core import model as model_lib
from loop.core.model import ModelSnapshot
from loop.errors import LoopError, ServiceUnavailable
from loop.services.store import Keys, Store, _snapshot_from, _snapshot_mapping

P = 3




# -- key names ------------------------------------------------------------------------------
@pytest.mark.parametrize("key, expected", [
    (Keys.current_project(), "loop:current_project"),
    (Keys.annotators(), "loop:annotators"),
    (Keys.project(3), "loop:project:3"),
    (Keys.items(3), "loop:project:3:items"),
    (Keys.tasks(3), "loop:project:3:tasks"),
    (Keys.texts(3), "loop:project:3:texts"),
    (Keys.annotations(3), "loop:project:3:annotations"),
    (Keys.assigned(3), "loop:project:3:assigned"),
    (Keys.rounds(3), "loop:project:3:rounds"),
    (Keys.round(3, 2), "loop:project:3:round:2"),
    (Keys.round_assignments(3, 2), "loop:project:3:round:2:assignments"),
    (Keys.models(3), "loop:project:3:models"),
    (Keys.model(3, "v4"), "loop:project:3:model:v4"),
    (Keys.current_model(3), "loop:project:3:model:current"),
    (Keys.events(3), "loop:project:3:events"),
    (Keys.round(17, 10), "loop:project:17:round:10"),
    (Keys.projects(), "loop:projects"),
    (Keys.deadletter(), "loop:deadletter"),
    (Keys.trainer_heartbeat(), "loop:trainer:heartbeat"),
    (Keys.model_seq(3), "loop:project:3:model:seq"),
    (Keys.adjudication(3), "loop:project:3:adjudication"),
    (Keys.ls_synced_at(3), "loop:project:3:ls_synced_at"),
    (Keys.queues(3), "loop:project:3:queues"),
    (Keys.queue(3, "alice"), "loop:project:3:queue:alice"),
    (Keys.queue_synced_at(3), "loop:project:3:queue_synced_at"),
    (Keys.accepted(3), "loop:project:3:accepted"),
    (Keys.round_relabels(3, 2), "loop:project:3:round:2:relabels"),
    (Keys.relabelling(3), "loop:project:3:relabelling"),
    (Keys.audits(3), "loop:project:3:audits"),
    (Keys.audit(3, 2), "loop:project:3:audit:2"),
    (Keys.audit_items(3, 2), "loop:project:3:audit:2:items"),
    (Keys.releases(3), "loop:project:3:releases"),
    (Keys.release(3, "v2"), "loop:project:3:release:v2"),
    (Keys.round_controls(3, 2), "loop:project:3:round:2:controls"),
    (Keys.gold(3), "loop:project:3:gold"),
    (Keys.training_lease(3), "loop:project:3:training_lease"),
])
def test_key_shapes(key, expected):
    assert key == expected


def test_every_key_method_is_pinned():
    """A new Keys method must get a line in test_key_shapes (and in the store's docstring)."""
    methods = {name for name in vars(Keys) if not name.startswith("_")}
    assert methods == {"current_project", "annotators", "project", "items", "tasks", "annotations", "assigned",
                       "rounds", "round", "round_assignments", "models", "model", "current_model", "events",
                       "projects", "deadletter", "trainer_heartbeat", "model_seq", "adjudication", "ls_synced_at",
                       "texts", "queues", "queue", "queue_synced_at", "accepted", "round_relabels",
                       "relabelling", "audits", "audit", "audit_items", "round_controls", "gold",
                       "releases", "release", "training_lease"}


def test_keys_written_are_the_documented_ones(redis_store):
    s = redis_store
    s.save_project(P, {"labels": ["a", "b"]})
    s.add_items(P, {"i1": {"task_id": 10, "key": "h1"}}, texts={"i1": "hello"})
    s.add_annotator({"name": "alice"})
    s.replace_annotations(P, {"1": {"item_id": "i1", "label": "a"}})
    s.plan_round(P, {"id": 1}, {"i1": ["alice"]}, relabels={"i0": ["bob"]})
    s.append_event(P, {"action": "ANNOTATION_CREATED"})
    s.save_model(P, _snapshot(_fit(2), s.next_model_version(P)))
    s.dead_letter("bad", {"x": 1})
    s.heartbeat()
    s.add_adjudication(P, {"i1": {"adjudicator": "carol"}})
    s.set_synced_at(P, "2026-11-22T10:00:00.000000Z")
    assert s.synced_at(P) == "2026-11-22T10:00:00.000000Z"
    s.add_queue(P, "alice", 77)
    s.add_queue_tasks(P, "alice", {"i1": 501})
    s.set_synced_at(P, "2026-11-22T10:00:05.000000Z", 77)
    assert s.synced_at(P, 77) == "2026-11-22T10:00:05.000000Z" and s.synced_at(P, P) == s.synced_at(P)
    s.accept(P, ["1"])
    n = s.plan_audit(P, {"auditor": "dora", "status": "open"}, {"i1": {"label": "a"}})
    s.add_audit_tasks(P, n, {"i1": 900})
    s.save_release(P, 1, {"path": "releases/project-3/v1", "manifest_sha256": "ab"})
    s.plan_round(P, {"id": 2}, {}, controls={"g1": ["alice"]})
    s.add_gold(P, {"g1": {"label": "a", "source": "file:gold.jsonl", "added_at": 1.0}})
    s.acquire_training_lease(P, "trainer-1", 60_000)
    assert {k.decode() for k in s.r.keys("*")} == {
        Keys.projects(), Keys.deadletter(), Keys.trainer_heartbeat(), Keys.model_seq(P), Keys.adjudication(P),
        Keys.current_project(), Keys.annotators(), Keys.project(P), Keys.items(P), Keys.tasks(P),
        Keys.annotations(P), Keys.assigned(P), Keys.rounds(P), Keys.round(P, 1), Keys.round_assignments(P, 1),
        Keys.models(P), Keys.model(P, "v1"), Keys.current_model(P), Keys.events(P), Keys.ls_synced_at(P),
        Keys.texts(P), Keys.queues(P), Keys.queue(P, "alice"), Keys.queue_synced_at(P), Keys.accepted(P),
        Keys.round_relabels(P, 1), Keys.relabelling(P), Keys.audits(P), Keys.audit(P, 1), Keys.audit_items(P, 1),
        Keys.round(P, 2), Keys.round_controls(P, 2), Keys.gold(P),
        Keys.releases(P), Keys.release(P, "v1"), Keys.training_lease(P),
    }


def test_releases_are_numbered_once_and_listed_in_order(redis_store):
    assert redis_store.releases(P) == [] and redis_store.release(P, "v1") is None
    assert redis_store.save_release(P, 2, {"path": "/r/v2", "parent": "v1"}) == "v2"
    assert redis_store.save_release(P, 1, {"path": "/r/v1", "parent": None}) == "v1"
    assert [(r["version"], r["number"], r["parent"]) for r in redis_store.releases(P)] == [
        ("v1", 1, None), ("v2", 2, "v1")]
    with pytest.raises(LoopError, match="v2 .*recorded by another"):
        redis_store.save_release(P, 2, {"path": "/elsewhere/v2"})
    assert redis_store.release(P, "v2")["path"] == "/r/v2"  # the first record stands


def test_queues_their_tasks_and_accepted_labels(redis_store):
    redis_store.add_items(P, {"i1": {"task_id": 10, "key": "h1"}, "i2": {"task_id": 11, "key": "h2"}})
    assert redis_store.queues(P) == {} and redis_store.queue_tasks(P, "alice") == {}
    redis_store.add_queue(P, "alice", 40)
    redis_store.add_queue_tasks(P, "alice", {"i1": 400, "i2": 401})
    assert {k: v["ls_project"] for k, v in redis_store.queues(P).items()} == {"alice": 40}
    assert redis_store.queue_tasks(P, "alice") == {"i1": 400, "i2": 401}
    assert redis_store.items_for_tasks(P, [10, 400, 401, 999]) == {10: "i1", 400: "i1", 401: "i2"}  # one task map
    assert redis_store.accept(P, ["a1", "a2"]) == 2 and redis_store.accept(P, ["a1"]) == 0
    assert redis_store.accepted(P) == {"a1", "a2"}


def test_annotations_of_one_label_studio_project_are_replaced_alone(redis_store):
    redis_store.replace_annotations(P, {"1": {"item_id": "i1", "label": "a"},  # main project (no ls_project: legacy)
                                        "2": {"item_id": "i1", "label": "b", "ls_project": 40}})  # alice's queue
    counts = redis_store.replace_annotations(P, {"3": {"item_id": "i2", "label": "a", "ls_project": 40}}, ls_project=40)
    assert counts == {"added": 1, "updated": 0, "removed": 1}
    assert set(redis_store.annotations(P)) == {"1", "3"}
    assert redis_store.annotation_count(P, 40) == 1 and redis_store.annotation_count(P, P) == 1


def test_item_texts_are_kept_with_the_items(redis_store):
    redis_store.add_items(P, {"i1": {"task_id": 10, "key": "h1"}, "i2": {"task_id": 11, "key": "h2"}},
                          texts={"i1": "héllo wörld", "i2": "second"})
    assert redis_store.item_texts(P, ["i2", "i1", "nope"]) == {"i1": "héllo wörld", "i2": "second"}
    redis_store.add_item_texts(P, {"i3": "third"})
    assert redis_store.item_texts(P, ["i3"]) == {"i3": "third"}
    assert redis_store.item_texts(P, []) == {}


# -- connection -----------------------------------------------------------------------------
def test_connect_to_nothing_is_service_unavailable(unused_port):
    with pytest.raises(ServiceUnavailable) as exc:
        Store.connect(f"redis://127.0.0.1:{unused_port}/0")
    msg = str(exc.value)
    assert f"127.0.0.1:{unused_port}" in msg and "loop up" in msg


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- projects -------------------------------------------------------------------------------
def test_save_and_load_project(redis_store):
    record = {"labels": ["billing", "delivery"], "text_field": "text", "title": "Tickets",
              "guideline_version": 1, "created_at": 1700000000.5, "extra": {"nested": [1, None, True]}}
    assert redis_store.project(P) is None
    assert redis_store.current_project() is None
    redis_store.save_project(P, record)
    assert redis_store.project(P) == record
    assert redis_store.current_project() == P


def test_save_project_without_making_it_current(redis_store):
    redis_store.save_project(1, {"labels": ["a", "b"]})
    redis_store.save_project(2, {"labels": ["c", "d"]}, make_current=False)
    assert redis_store.current_project() == 1
    assert redis_store.project(2) == {"labels": ["c", "d"]}


def test_save_project_merges_fields(redis_store):
    redis_store.save_project(P, {"labels": ["a", "b"], "title": "old"})
    redis_store.save_project(P, {"title": "new"})
    assert redis_store.project(P) == {"labels": ["a", "b"], "title": "new"}


# -- items ----------------------------------------------------------------------------------
def test_add_items_and_item_for_task(redis_store):
    items = {"i1": {"task_id": 101, "key": "h1"}, "i2": {"task_id": 102, "key": "h2"}}
    redis_store.add_items(P, items)
    redis_store.add_items(P, {"i3": {"task_id": 103, "key": "h3"}})
    assert redis_store.items(P) == {**items, "i3": {"task_id": 103, "key": "h3"}}
    assert redis_store.item_for_task(P) == {101: "i1", 102: "i2", 103: "i3"}
    assert redis_store.items(P + 1) == {} and redis_store.item_for_task(P + 1) == {}


def test_add_no_items_writes_nothing(redis_store):
    redis_store.add_items(P, {})
    assert redis_store.r.keys("*") == []


# -- annotators -----------------------------------------------------------------------------
def test_annotators_round_trip(redis_store):
    alice = {"name": "alice", "email": "alice@loop.local", "ls_user_id": 5, "created_at": 1.5}
    redis_store.add_annotator(alice)
    redis_store.add_annotator({**alice, "name": "bob", "ls_user_id": 6})
    assert redis_store.annotators() == {"alice": alice, "bob": {**alice, "name": "bob", "ls_user_id": 6}}


# -- annotations ----------------------------------------------------------------------------
def annotations(*ids, label="a"):
    return {str(i): {"id": str(i), "item_id": f"i{i}", "label": label, "created_at": f"2024-01-0{i}"} for i in ids}


def test_replace_annotations_counts_and_idempotence(redis_store):
    first = annotations(1, 2, 3)
    assert redis_store.replace_annotations(P, first) == {"added": 3, "updated": 0, "removed": 0}
    assert redis_store.replace_annotations(P, first) == {"added": 0, "updated": 0, "removed": 0}
    assert redis_store.annotations(P) == first


def test_replace_annotations_updates_and_removes_vanished(redis_store):
    redis_store.replace_annotations(P, annotations(1, 2, 3))
    fresh = {**annotations(1), **annotations(2, label="b"), **annotations(4)}  # 2 changed, 3 gone, 4 new
    assert redis_store.replace_annotations(P, fresh) == {"added": 1, "updated": 1, "removed": 1}
    assert redis_store.annotations(P) == fresh
    assert redis_store.replace_annotations(P, fresh) == {"added": 0, "updated": 0, "removed": 0}


def test_replace_annotations_with_nothing_clears(redis_store):
    redis_store.replace_annotations(P, annotations(1, 2))
    assert redis_store.replace_annotations(P, {}) == {"added": 0, "updated": 0, "removed": 2}
    assert redis_store.annotations(P) == {}


def test_replace_annotations_int_keys_match_string_keys(redis_store):
    redis_store.replace_annotations(P, {7: {"item_id": "x", "label": "a"}})
    assert redis_store.replace_annotations(P, {"7": {"item_id": "x", "label": "a"}}) == \
        {"added": 0, "updated": 0, "removed": 0}


def test_replace_annotations_is_per_project(redis_store):
    redis_store.replace_annotations(1, annotations(1))
    redis_store.replace_annotations(2, annotations(2))
    assert list(redis_store.annotations(1)) == ["1"]
    assert list(redis_store.annotations(2)) == ["2"]


# -- rounds ---------------------------------------------------------------------------------
ROUND1 = {"id": 1, "strategy": "margin", "size": 2, "overlap": 2, "created_at": 1700000000.0}
ASSIGN1 = {"i1": ["alice", "bob"], "i2": ["bob", "carol"]}


def snapshot_of_rounds(store: Store) -> dict:
    return {k.decode(): store.r.dump(k) for k in store.r.keys("*")}


def test_plan_round_writes_everything(redis_store):
    redis_store.plan_round(P, ROUND1, ASSIGN1)
    assert redis_store.round(P, 1) == {**ROUND1, "status": "planned"}
    assert redis_store.round_assignments(P, 1) == ASSIGN1
    assert redis_store.assigned(P) == {"i1": 1, "i2": 1}
    assert redis_store.round_numbers(P) == [1]
    assert redis_store.rounds(P) == [{**ROUND1, "status": "planned"}]


def test_plan_round_refuses_an_assigned_item_and_writes_nothing(redis_store):
    redis_store.plan_round(P, ROUND1, ASSIGN1)
    before = snapshot_of_rounds(redis_store)
    with pytest.raises(LoopError) as exc:
        redis_store.plan_round(P, {**ROUND1, "id": 2}, {"i3": ["alice"], "i2": ["carol"]})
    assert "i2" in str(exc.value) and "already assigned" in str(exc.value)
    assert snapshot_of_rounds(redis_store) == before
    assert redis_store.round(P, 2) is None
    assert redis_store.round_assignments(P, 2) == {}
    assert "i3" not in redis_store.assigned(P)
    assert redis_store.round_numbers(P) == [1]


def test_plan_round_refuses_an_existing_round_and_writes_nothing(redis_store):
    redis_store.plan_round(P, ROUND1, ASSIGN1)
    redis_store.update_round(P, 1, status="open")
    before = snapshot_of_rounds(redis_store)
    with pytest.raises(LoopError) as exc:
        redis_store.plan_round(P, {**ROUND1, "strategy": "random"}, {"i9": ["alice"]})
    assert "round 1 already exists" in str(exc.value)
    assert snapshot_of_rounds(redis_store) == before
    assert redis_store.round(P, 1)["strategy"] == "margin"
    assert redis_store.round(P, 1)["status"] == "open"


def test_rounds_are_listed_in_number_order(redis_store):
    for n in (2, 10, 1):
        redis_store.plan_round(P, {**ROUND1, "id": n}, {f"item{n}": ["alice"]})
    assert redis_store.round_numbers(P) == [1, 2, 10]
    assert [r["id"] for r in redis_store.rounds(P)] == [1, 2, 10]


def test_update_round(redis_store):
    redis_store.plan_round(P, ROUND1, ASSIGN1)
    redis_store.update_round(P, 1, status="open", views={"alice": 12})
    assert redis_store.round(P, 1) == {**ROUND1, "status": "open", "views": {"alice": 12}}


def test_close_round_releases_items(redis_store):
    redis_store.plan_round(P, ROUND1, {**ASSIGN1, "i3": ["alice"]})
    redis_store.close_round(P, 1, release=["i2", "i3"])
    record = redis_store.round(P, 1)
    assert record["status"] == "closed"
    assert record["released"] == 2
    assert isinstance(record["closed_at"], float)
    assert redis_store.assigned(P) == {"i1": 1}
    assert redis_store.round_assignments(P, 1) == {**ASSIGN1, "i3": ["alice"]}  # history is kept
    # A released item can be assigned again in a later round.
    redis_store.plan_round(P, {**ROUND1, "id": 2}, {"i2": ["carol"]})
    assert redis_store.assigned(P) == {"i1": 1, "i2": 2}


def test_close_round_releasing_nothing(redis_store):
    redis_store.plan_round(P, ROUND1, ASSIGN1)
    redis_store.close_round(P, 1)
    assert redis_store.round(P, 1)["released"] == 0
    assert redis_store.assigned(P) == {"i1": 1, "i2": 1}


# -- models ---------------------------------------------------------------------------------
def _fit(n_classes: int, seed: int = 0, dtype=np.float32) -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(20 * n_classes, 6)).astype(dtype)
    y = np.array([f"class{i % n_classes}" for i in range(len(X))])
    X[np.arange(len(X)), np.arange(len(X)) % n_classes] += 2.0  # make the classes learnable
    return LogisticRegression(max_iter=1000).fit(X, y), X


def _snapshot(fitted, version, **kw) -> ModelSnapshot:
    clf, _ = fitted
    return model_lib.snapshot(clf, version, n_labels=40, **kw)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_model_round_trip_predicts_identically(redis_store, n_classes):
    clf, X = _fit(n_classes, dtype=np.float64)
    snap = model_lib.snapshot(clf, "v1", n_labels=len(X), round=4)
    redis_store.save_model(P, snap)
    loaded = redis_store.load_model(P)
    assert loaded.version == "v1" and loaded.round == 4 and loaded.n_labels == len(X)
    assert loaded.classes == [f"class{i}" for i in range(n_classes)]
    assert loaded.created_at == snap.created_at
    assert np.array_equal(loaded.coef, clf.coef_) and np.array_equal(loaded.intercept, clf.intercept_)
    restored = model_lib.restore(loaded)
    assert np.array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert list(restored.predict(X)) == list(clf.predict(X))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_model_round_trip_on_float32_embeddings(redis_store, n_classes):
    """Embeddings are float32; the snapshot stores float64, so probabilities agree to float32 precision."""
    clf, X = _fit(n_classes, dtype=np.float32)
    redis_store.save_model(P, model_lib.snapshot(clf, "v1", n_labels=len(X)))
    restored = model_lib.restore(redis_store.load_model(P))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), rtol=1e-5, atol=1e-6)
    assert list(restored.predict(X)) == list(clf.predict(X))


def test_load_model_when_there_is_none(redis_store):
    assert redis_store.current_model_version(P) is None
    assert redis_store.load_model(P) is None
    redis_store.save_model(P, _snapshot(_fit(2), "v1"))
    assert redis_store.load_model(P, "v9") is None


def test_next_model_version_and_current(redis_store):
    assert redis_store.next_model_version(P) == "v1"
    redis_store.save_model(P, _snapshot(_fit(2, seed=1), "v1"))
    assert redis_store.next_model_version(P) == "v2"
    redis_store.save_model(P, _snapshot(_fit(3, seed=2), "v2"))
    assert redis_store.next_model_version(P) == "v3"
    assert redis_store.next_model_version(P + 1) == "v1"
    assert redis_store.current_model_version(P) == "v2"
    assert redis_store.load_model(P).classes == ["class0", "class1", "class2"]
    assert redis_store.load_model(P, "v1").classes == ["class0", "class1"]  # older versions stay loadable


def test_snapshot_mapping_is_json_and_bytes_only():
    snap = _snapshot(_fit(3), "v2", round=1)
    mapping = _snapshot_mapping(snap)
    assert set(mapping) == {"coef", "coef_shape", "intercept", "dtype", "meta"}
    assert isinstance(mapping["coef"], bytes) and isinstance(mapping["intercept"], bytes)
    raw = {k.encode(): (v if isinstance(v, bytes) else v.encode()) for k, v in mapping.items()}
    back = _snapshot_from(raw)
    assert back.coef.shape == snap.coef.shape == (3, 6)
    assert np.array_equal(back.coef, snap.coef) and np.array_equal(back.intercept, snap.intercept)


# -- events ---------------------------------------------------------------------------------
def test_events(redis_store):
    assert redis_store.event_count(P) == 0
    first = redis_store.append_event(P, {"action": "ANNOTATION_CREATED", "task": 1})
    second = redis_store.append_event(P, {"action": "ANNOTATION_UPDATED", "task": 1})
    assert redis_store.event_count(P) == 2
    assert first != second and isinstance(first, str)
    assert redis_store.event_count(P + 1) == 0


def test_handled_events_are_trimmed_but_never_one_not_yet_handled(redis_store):
    redis_store.save_project(P, {"labels": ["a", "b"]}, make_current=False)
    for n in range(10):
        redis_store.append_event(P, {"action": "ANNOTATION_CREATED", "n": n})
    delivered = redis_store.read_events("t", block_ms=10, count=8)[P]  # 8 delivered, 2 not yet
    redis_store.r.xack(f"loop:project:{P}:events", "trainer", *[i for i, _ in delivered[:6]])  # 2 pending
    assert redis_store.trim_events(P, keep=3) == 5  # 0-4 go; 5-7 are the newest delivered (6, 7 still pending)
    left = [json.loads(f[b"event"])["n"] for _, f in redis_store.r.xrange(f"loop:project:{P}:events")]
    assert left == [5, 6, 7, 8, 9] and redis_store.backlog(P) == 4
    redis_store.r.xack(f"loop:project:{P}:events", "trainer", delivered[0][0])  # an old id, long trimmed: harmless
    assert redis_store.trim_events(P, keep=1) == 1 and redis_store.backlog(P) == 4  # 5 goes; 6, 7 pending stay
    redis_store.ack_events(P, [i for i, _ in delivered[6:]])  # acknowledging trims to the kept number (1000)
    assert redis_store.event_count(P) == 4 and redis_store.backlog(P) == 2


def test_a_dead_letter_keeps_an_excerpt_and_the_stream_is_bounded(redis_store):
    from loop.services.store import DEAD_LETTER_EXCERPT

    redis_store.dead_letter("too big", {"junk": "x" * 50_000})
    (dead,) = redis_store.dead_letters()
    assert dead["size"] > 50_000 and len(dead["payload"]) == DEAD_LETTER_EXCERPT  # cut: kept as text
    assert redis_store.r.memory_usage("loop:deadletter") < 20_000


def test_a_relabel_is_planned_with_its_round_and_ends_when_the_round_closes(redis_store):
    s = redis_store
    s.plan_round(P, {"id": 1}, {"i1": ["alice"]}, relabels={"i0": ["bob"], "i5": ["alice"]})
    assert s.round_relabels(P, 1) == {"i0": ["bob"], "i5": ["alice"]} and s.relabelling(P) == {"i0": 1, "i5": 1}
    assert "i0" not in s.assigned(P)  # a relabel is not an assignment of a new item
    with pytest.raises(LoopError, match="already assigned"):  # one open relabel per item
        s.plan_round(P, {"id": 2}, {"i2": ["alice"]}, relabels={"i5": ["carol"]})
    assert s.round_numbers(P) == [1]
    s.close_round(P, 1)
    assert s.relabelling(P) == {} and s.round_relabels(P, 1) == {"i0": ["bob"], "i5": ["alice"]}
    s.plan_round(P, {"id": 2}, {}, relabels={"i5": ["carol"]})  # a relabel-only round
    assert s.relabelling(P) == {"i5": 2}


def test_audits_are_numbered_and_keep_their_sample_and_tasks(redis_store):
    s = redis_store
    assert s.latest_audit(P) is None and s.audit_projects(P) == {}
    first = s.plan_audit(P, {"auditor": "dora", "status": "open", "report": None}, {"i1": {"label": "a"}})
    second = s.plan_audit(P, {"auditor": "eve", "status": "open", "report": None}, {"i2": {"label": "b"}})
    assert (first, second) == (1, 2) and s.latest_audit(P)["auditor"] == "eve"
    s.update_audit(P, 1, ls_project=81, status="reported", report={"verdict": "individual"})
    s.add_audit_tasks(P, 1, {"i1": 901})
    assert s.audit(P, 1)["report"] == {"verdict": "individual"} and s.audit_numbers(P) == [1, 2]
    assert s.audit_items(P, 1) == {"i1": {"label": "a", "task_id": 901}}
    assert s.items_for_tasks(P, [901]) == {901: "i1"} and s.audit_projects(P) == {81: 1}


def test_gold_and_new_items_are_written_together_and_controls_with_their_round(redis_store):
    s = redis_store
    s.add_gold(P, {"g1": {"label": "a", "source": "file:g.jsonl", "added_at": 1.0},
                   "i1": {"label": "b", "source": "adjudicated", "added_at": 2.0}},
               items={"g1": {"task_id": 70, "key": "h"}}, texts={"g1": "gold text"})
    assert s.gold(P)["g1"]["label"] == "a" and s.gold(P)["i1"]["source"] == "adjudicated"
    assert s.items(P) == {"g1": {"task_id": 70, "key": "h"}} and s.item_texts(P, ["g1"]) == {"g1": "gold text"}
    assert s.items_for_tasks(P, [70]) == {70: "g1"}
    s.plan_round(P, {"id": 1}, {"i2": ["alice"]}, controls={"g1": ["alice", "bob"]})
    assert s.round_controls(P, 1) == {"g1": ["alice", "bob"]} and s.round_controls(P, 2) == {}
    assert "g1" not in s.assigned(P)  # a control is not an assignment: it never leaves the gold set


# -- more than one trainer: the training lease, publication under it, events across consumers ----
def test_the_training_lease_is_exclusive_expires_and_is_released_by_its_holder_only(redis_store):
    import time

    from loop.services.store import COOLDOWN

    s = redis_store
    first = s.acquire_training_lease(P, "trainer-a", 200)
    assert first and first.startswith("trainer-a ")
    assert s.acquire_training_lease(P, "trainer-b", 200) is None  # taken
    assert s.acquire_training_lease(P, "trainer-a", 200) is None  # by anyone, its holder too: one hold at a time
    assert s.acquire_training_lease(P + 1, "trainer-b", 200)  # another project is free
    holder, left = s.training_lease(P)
    assert holder == "trainer-a" and 0 < left <= 200
    assert s.renew_training_lease(P, first, 5_000) and s.training_lease(P)[1] > 1_000
    assert s.release_training_lease(P, first) and s.training_lease(P) == (None, 0)
    second = s.acquire_training_lease(P, "trainer-b", 150)
    assert not s.renew_training_lease(P, first, 5_000)  # an old token renews nothing...
    assert not s.release_training_lease(P, first)  # ...and releases nothing
    assert s.training_lease(P)[0] == "trainer-b"
    time.sleep(0.25)  # trainer-b died: its lease expires
    assert s.training_lease(P) == (None, 0) and not s.renew_training_lease(P, second, 5_000)
    third = s.acquire_training_lease(P, "trainer-a", 5_000)
    assert s.release_training_lease(P, third, cooldown_ms=150)  # the retrain interval, across trainers
    assert s.training_lease(P)[0] == COOLDOWN and s.acquire_training_lease(P, "trainer-b", 5_000) is None
    time.sleep(0.2)
    assert s.acquire_training_lease(P, "trainer-b", 5_000)


def test_a_stale_trainer_publishes_nothing_and_an_older_version_never_becomes_current(redis_store):
    import time

    from loop.services.store import LeaseLost

    s = redis_store
    stale = s.acquire_training_lease(P, "trainer-a", 100)
    v1 = s.next_model_version(P)
    time.sleep(0.15)  # trainer-a stalls past its lease; trainer-b takes the project and publishes
    fresh = s.acquire_training_lease(P, "trainer-b", 5_000)
    v2 = s.next_model_version(P)
    assert (v1, v2) == ("v1", "v2")  # an atomic counter: never the same version twice
    assert s.save_model(P, _snapshot(_fit(2), v2), lease=fresh) is True
    with pytest.raises(LeaseLost, match="lease expired"):
        s.save_model(P, _snapshot(_fit(3), v1), lease=stale)
    assert s.current_model_version(P) == "v2" and s.load_model(P, "v1") is None  # nothing of it written
    assert [v.decode() for v in s.r.zrange(f"loop:project:{P}:models", 0, -1)] == ["v2"]
    # Without a lease (the CLI's next-round) a slower writer's model is kept, never made current over a newer one.
    v3, v4 = s.next_model_version(P), s.next_model_version(P)
    assert s.save_model(P, _snapshot(_fit(2, seed=4), v4)) is True
    assert s.save_model(P, _snapshot(_fit(2, seed=3), v3)) is False
    assert s.current_model_version(P) == "v4" and s.load_model(P, "v3").version == "v3"
    assert s.save_model(P, _snapshot(_fit(2, seed=5), "v10")) is True  # numbers, not strings: v10 > v4
    assert s.current_model_version(P) == "v10"


def test_the_lease_holder_takes_every_unacknowledged_event_and_acknowledges_under_its_lease(redis_store):
    from loop.services.store import LeaseLost

    s = redis_store
    s.save_project(P, {"labels": ["a", "b"]}, make_current=False)
    ids = [s.append_event(P, {"action": "ANNOTATION_CREATED", "n": n}) for n in range(6)]
    assert s.pending_projects() == []
    assert [e["n"] for _, e in s.read_events("trainer-a", block_ms=10, count=2)[P]] == [0, 1]  # a gathers...
    assert [e["n"] for _, e in s.read_events("trainer-b", block_ms=10, count=2)[P]] == [2, 3]  # ...b waits
    assert s.pending_projects() == [P]
    token = s.acquire_training_lease(P, "trainer-a", 5_000)
    taken = s.take_events(P, "trainer-a")
    assert [i for i, _ in taken] == ids and [e["n"] for _, e in taken] == list(range(6))  # b's and the new too
    consumers = {c["name"].decode(): c["pending"] for c in s.r.xinfo_consumers(f"loop:project:{P}:events", "trainer")}
    assert consumers == {"trainer-a": 6, "trainer-b": 0}
    assert s.ack_events(P, [i for i, _ in taken], lease=token) == 6
    assert s.ack_events(P, ids[:2]) == 0  # acknowledged once only
    assert s.pending_projects() == [] and s.backlog(P) == 0
    s.append_event(P, {"action": "ANNOTATION_CREATED", "n": 6})
    (late,) = s.take_events(P, "trainer-a")
    s.release_training_lease(P, token)
    s.acquire_training_lease(P, "trainer-b", 5_000)  # trainer-a's lease is gone: it may not acknowledge
    with pytest.raises(LeaseLost):
        s.ack_events(P, [late[0]], lease=token)
    assert s.backlog(P) == 1


def test_events_of_a_dead_trainer_are_taken_over_and_idle_consumers_pruned(redis_store):
    s = redis_store
    s.save_project(P, {"labels": ["a", "b"]}, make_current=False)
    ids = [s.append_event(P, {"action": "ANNOTATION_CREATED", "n": n}) for n in range(3)]
    s.read_events("trainer-dead", block_ms=10)  # delivered, then the process was killed
    s.r.xdel(f"loop:project:{P}:events", ids[1])  # and one entry deleted by hand meanwhile
    taken = s.take_events(P, "trainer-b")
    assert [e["n"] for _, e in taken] == [0, 2]
    s.ack_events(P, [i for i, _ in taken])
    assert s.pending_projects() == [] and s.backlog(P) == 0  # the deleted one does not stay pending
    assert s.prune_consumers(P, idle_ms=3_600_000) == 0  # seen just now
    assert s.prune_consumers(P, idle_ms=0) == 2  # holding nothing: both may go
    assert s.r.xinfo_consumers(f"loop:project:{P}:events", "trainer") == []
