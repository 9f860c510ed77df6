"""The trainer on a real Redis: coalescing, publishing versions, deletions, crash recovery."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.embeddings import DIM, key_for_hash
from loop.services.vectors import EmbeddingCache, ItemVectors
from ml_backend.trainer import Trainer
from tests.helpers import stamp

P = 4


class NoEmbedder:
    """Every vector these tests need is cached: embedding anything would be a bug."""

    batch_size = 64

    def encode(self, texts):
        raise AssertionError(f"embedded {len(texts)} texts; every vector was cached")


def vectors_of(store, cache):
    return ItemVectors(store, cache, NoEmbedder())


def setup_project(store, cache, n=12):
    store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    rng = np.random.default_rng(0)
    items, vectors = {}, {}
    for i in range(n):
        items[f"i{i}"] = {"task_id": 100 + i, "key": f"h{i}"}
        v = rng.normal(size=DIM) + (3 if i % 2 else -3)
        vectors[key_for_hash(f"h{i}")] = (v / np.linalg.norm(v)).astype(np.float32)
    store.add_items(P, items)
    cache.put_many(vectors)
    store.plan_round(P, {"id": 1}, {i: ["alice", "carol"] for i in items})  # their labels count


def label_event(ann_id, item, label):
    return {"action": "ANNOTATION_CREATED", "remove": [],
            "upsert": [{"id": str(ann_id), "item_id": item, "annotator": "alice", "label": label,
                        "created_at": f"2026-01-01T00:00:{ann_id:02d}"}]}


def test_a_burst_of_events_is_one_retrain(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    for n in range(10):
        redis_store.append_event(P, label_event(n, f"i{n}", "pos" if n % 2 else "neg"))
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), coalesce_s=0.05, block_ms=100)
    assert trainer.step() == {P: "v1"}
    assert redis_store.current_model_version(P) == "v1"
    assert len(redis_store.annotations(P)) == 10
    assert redis_store.load_model(P).n_labels == 10
    assert trainer.step() == {}  # everything acknowledged: nothing to do
    assert redis_store.r.xpending(f"loop:project:{P}:events", "trainer")["pending"] == 0


def test_deletions_and_single_class_labels_publish_nothing(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.append_event(P, label_event(1, "i1", "pos"))
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), coalesce_s=0.01, block_ms=100)
    assert trainer.step() == {P: None}  # one class: no model yet
    redis_store.append_event(P, label_event(2, "i2", "neg"))
    assert trainer.step() == {P: "v1"}
    redis_store.append_event(P, {"action": "ANNOTATIONS_DELETED", "upsert": [], "remove": ["2"]})
    assert trainer.step() == {P: None}
    assert set(redis_store.annotations(P)) == {"1"}
    assert redis_store.current_model_version(P) == "v1"  # the last good model keeps serving


def test_events_read_but_not_acknowledged_are_handled_after_a_crash(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.append_event(P, label_event(1, "i1", "pos"))
    redis_store.append_event(P, label_event(2, "i2", "neg"))
    redis_store.read_events("trainer-1", block_ms=100)  # delivered, then the process "dies"
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), coalesce_s=0.01, block_ms=100)
    assert trainer.step() == {}  # nothing new...
    assert trainer.step(pending=True) == {P: "v1"}  # ...but the pending events are recovered
    assert len(redis_store.annotations(P)) == 2


def test_backlog_counts_undelivered_and_unacknowledged_events(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    assert redis_store.backlog(P) == 0
    redis_store.append_event(P, label_event(1, "i1", "pos"))
    redis_store.append_event(P, label_event(2, "i2", "neg"))
    assert redis_store.backlog(P) == 2
    redis_store.read_events("trainer-1", block_ms=100)  # delivered, not acknowledged
    assert redis_store.backlog(P) == 2
    redis_store.append_event(P, label_event(3, "i3", "pos"))  # queued after the group's last delivery
    assert redis_store.backlog(P) == 3
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), coalesce_s=0.01, block_ms=100)
    trainer.step(pending=True)
    trainer.step()
    assert redis_store.backlog(P) == 0


def test_payload_less_events_make_the_trainer_pull_only_what_changed(redis_store, tmp_path, fake_ls):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    ls = fake_ls
    ls.annotate(100, 1, "neg", stamp(1))
    ls.annotate(101, 2, "pos", stamp(2))
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), ls=ls, coalesce_s=0.01, block_ms=100)
    sync = {"action": "ANNOTATION_CREATED", "sync": True, "upsert": [], "remove": []}

    redis_store.append_event(P, sync)
    assert trainer.step() == {P: "v1"}
    assert ls.calls == [("export", None)]  # the first pull reads everything once
    assert {a["item_id"]: a["label"] for a in redis_store.annotations(P).values()} == {"i0": "neg", "i1": "pos"}
    assert redis_store.synced_at(P) == stamp(2)

    ls.annotate(102, 3, "neg", stamp(5))
    ls.annotate(101, 2, "neg", stamp(6))  # alice changed her mind
    redis_store.append_event(P, sync)
    trainer.step()
    assert ls.calls[-1] == ("changed", "2026-11-22T10:00:01.000000Z")  # the mark minus the overlap
    assert {a["item_id"]: a["label"] for a in redis_store.annotations(P).values()} == {"i0": "neg", "i1": "neg",
                                                                                      "i2": "neg"}
    ls.delete(100, 1, stamp(9))
    redis_store.append_event(P, {**sync, "action": "ANNOTATIONS_DELETED"})
    trainer.step()
    assert {a["item_id"] for a in redis_store.annotations(P).values()} == {"i1", "i2"}
    assert redis_store.synced_at(P) == stamp(9)


def test_a_pulled_annotation_with_an_unknown_label_is_dead_lettered_once_and_the_rest_recorded(
        redis_store, tmp_path, fake_ls):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    ls = fake_ls
    ls.annotate(100, 1, "neg", stamp(1))
    ls.annotate(101, 2, "maybe", stamp(1))
    ls.annotate(102, 3, "pos", stamp(1))
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), ls=ls, coalesce_s=0.01, block_ms=100)
    for version in ("v1", None):  # the second pull meets the same bad annotation again; nothing else changed
        redis_store.append_event(P, {"action": "ANNOTATION_CREATED", "sync": True, "upsert": [], "remove": []})
        assert trainer.step() == {P: version}
    assert set(redis_store.annotations(P)) == {"1", "3"}
    (dead,) = redis_store.dead_letters()
    assert "'maybe'" in dead["reason"] and dead["payload"]["annotation"]["id"] == 2


def test_a_failed_pull_leaves_the_events_for_the_next_try(redis_store, tmp_path, fake_ls):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})

    def down(p):
        raise ConnectionError("Label Studio is down")

    ls = fake_ls
    ls.annotate(100, 1, "neg", stamp(1))
    ls.export_tasks, reads = down, ls.export_tasks
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), ls=ls, coalesce_s=0.01, block_ms=100)
    redis_store.append_event(P, {"action": "ANNOTATION_CREATED", "sync": True, "upsert": [], "remove": []})
    with pytest.raises(ConnectionError):
        trainer.step()
    assert redis_store.r.xpending(f"loop:project:{P}:events", "trainer")["pending"] == 1
    ls.annotate(101, 2, "pos", stamp(2))
    ls.export_tasks = reads  # Label Studio is back
    assert trainer.step(pending=True) == {P: "v1"}
    assert redis_store.r.xpending(f"loop:project:{P}:events", "trainer")["pending"] == 0


def test_a_pull_never_undoes_a_newer_write_of_the_full_sync(redis_store, tmp_path, fake_ls):
    """The CLI's full sync may store an annotation after the trainer read its task: keep it."""
    from loop.services.sync import pull_changes

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    redis_store.add_annotator({"name": "carol", "ls_user_id": 7})
    redis_store.set_synced_at(P, stamp(0))
    old_read = fake_ls
    old_read.annotate(100, 1, "neg", stamp(1))  # the trainer's read: alice's label only
    newer = {"id": "2", "item_id": "i0", "task_id": 100, "annotator": "carol", "label": "pos",
             "updated_at": stamp(3)}
    changed = {"id": "1", "item_id": "i0", "task_id": 100, "annotator": "alice", "label": "pos",
               "updated_at": stamp(4)}
    redis_store.upsert_annotations(P, {"2": newer, "1": changed})  # the full sync, after that read
    pull_changes(redis_store, old_read, P)
    stored = redis_store.annotations(P)
    assert set(stored) == {"1", "2"} and stored["1"]["label"] == "pos"


def test_the_trainer_applies_the_training_policy_next_round_recorded(redis_store, tmp_path):
    """`next-round --guideline-version 2` records the policy; the trainer's retrain keeps to it
    instead of training on every label and replacing that model."""
    from loop.workflows.training import set_policy

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    for n in range(8):  # v1 labels on i0..i7, of both classes
        event = label_event(n, f"i{n}", "pos" if n % 2 else "neg")
        event["upsert"][0]["guideline_version"] = 1
        redis_store.append_event(P, event)
    for n in (8, 9, 10, 11):  # v2 labels on i8..i11
        event = label_event(n, f"i{n}", "pos" if n % 2 else "neg")
        event["upsert"][0]["guideline_version"] = 2
        redis_store.append_event(P, event)
    set_policy(redis_store, P, guideline_version=2)
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), coalesce_s=0.01, block_ms=100)
    assert trainer.step() == {P: "v1"}
    assert redis_store.load_model(P).n_labels == 4  # the v2 labels only, not all 12
    set_policy(redis_store, P, guideline_version=None)  # `--guideline-version all`
    redis_store.append_event(P, label_event(12, "i0", "neg"))
    trainer.step()
    assert redis_store.load_model(P).n_labels == 12


def test_a_trainer_with_an_empty_cache_of_its_own_embeds_from_the_texts_in_redis(redis_store, tmp_path):
    """As in docker-compose: the CLI embedded into the host's cache, the trainer has its own, empty."""
    from loop.core.dataset import text_key
    from loop.core.embeddings import Embedder
    from loop.core.model import restore

    texts = {"b1": "I was charged twice for the same order", "b2": "Please refund the extra payment",
             "b3": "Why is there a fee on my bill?", "d1": "My parcel never arrived",
             "d2": "The courier left the box at the wrong house", "d3": "Where is my delivery? It is a week late"}
    redis_store.save_project(P, {"labels": ["billing", "delivery"]}, make_current=False)
    redis_store.add_items(P, {i: {"task_id": 200 + n, "key": text_key(t)} for n, (i, t) in enumerate(texts.items())},
                          texts=texts)
    redis_store.plan_round(P, {"id": 1}, {i: ["alice"] for i in texts})
    for n, item in enumerate(texts):
        redis_store.append_event(P, {"action": "ANNOTATION_CREATED", "remove": [], "upsert": [
            {"id": str(n), "item_id": item, "annotator": "alice", "label": "billing" if item[0] == "b" else "delivery",
             "created_at": f"2026-01-01T00:00:{n:02d}"}]})
    cache = EmbeddingCache(tmp_path / "trainer-own" / "embeddings.sqlite")
    assert len(cache) == 0
    trainer = Trainer(redis_store, ItemVectors(redis_store, cache, Embedder()), coalesce_s=0.01, block_ms=100)
    assert trainer.step() == {P: "v1"}
    assert len(cache) == len(texts)  # embedded once, kept for the next retrain
    clf = restore(redis_store.load_model(P))
    probe = ItemVectors(redis_store, cache, NoEmbedder()).matrix(P, sorted(texts))
    assert list(clf.predict(probe)) == ["billing"] * 3 + ["delivery"] * 3


def test_retrains_keep_their_distance_and_skip_an_unchanged_training_set(redis_store, tmp_path):
    import time

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), coalesce_s=0.01, block_ms=100, min_interval_s=1.0)
    redis_store.append_event(P, label_event(1, "i1", "pos"))
    redis_store.append_event(P, label_event(2, "i2", "neg"))
    assert trainer.step() == {P: "v1"}
    redis_store.append_event(P, label_event(3, "i3", "pos"))
    start = time.monotonic()
    assert trainer.step() == {P: "v2"}
    assert time.monotonic() - start >= 0.9  # waited for the interval, gathering what came meanwhile
    redis_store.append_event(P, {"action": "ANNOTATION_UPDATED", "upsert": [], "remove": []})  # nothing changed
    assert trainer.step() == {P: None} and redis_store.current_model_version(P) == "v2"


def test_a_restarted_trainer_catches_up_on_labels_whose_webhooks_were_lost(redis_store, tmp_path, fake_ls):
    """Label Studio drops webhooks it cannot deliver: the trainer reads the changes itself when it
    starts and on its slow timer, and retrains; with nothing new it publishes nothing."""
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    fake_ls.annotate(100, 1, "neg", stamp(1))  # made while the backend was down: no event
    fake_ls.annotate(101, 2, "pos", stamp(2))
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), ls=fake_ls, coalesce_s=0.01, block_ms=100,
                      catch_up_s=3600)
    assert trainer.catch_up_due()
    assert trainer.catch_up() == {P: "v1"} and len(redis_store.annotations(P)) == 2
    assert not trainer.catch_up_due()  # the next one in an hour
    assert trainer.catch_up() == {P: None}  # nothing changed: no new version
    fake_ls.delete(101, 2, stamp(5))
    fake_ls.annotate(102, 3, "pos", stamp(6))
    assert trainer.catch_up() == {P: "v2"} and set(redis_store.annotations(P)) == {"1", "3"}


def test_a_cli_sync_that_brings_labels_queues_a_retrain_without_their_labels_removed(redis_store, tmp_path, fake_ls):
    from loop.services.sync import sync_annotations

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    redis_store.add_annotator({"name": "alice", "ls_user_id": 5})
    for n, label in ((1, "neg"), (2, "pos"), (3, "pos")):
        fake_ls.annotate(99 + n, n, label, stamp(n))
    sync_annotations(redis_store, fake_ls, P)
    trainer = Trainer(redis_store, vectors_of(redis_store, cache), ls=fake_ls, coalesce_s=0.01, block_ms=100)
    assert trainer.step() == {P: "v1"} and redis_store.load_model(P).n_labels == 3
    assert sync_annotations(redis_store, fake_ls, P) == {"added": 0, "updated": 0, "removed": 0}
    assert trainer.step() == {}  # an idle sync queues nothing
    fake_ls.delete(102, 3, stamp(9))  # a label removed (say it was forged): the next model is without it
    sync_annotations(redis_store, fake_ls, P)
    assert trainer.step() == {P: "v2"} and redis_store.load_model(P).n_labels == 2
