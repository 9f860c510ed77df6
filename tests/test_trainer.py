"""The trainer on a real Redis: coalescing, publishing versions, deletions, crash recovery."""

from __future__ import annotations

import numpy as np

from loop.embeddings import DIM, EmbeddingCache, key_for_hash
from ml_backend.trainer import Trainer

P = 4


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


def label_event(ann_id, item, label):
    return {"action": "ANNOTATION_CREATED", "remove": [],
            "upsert": [{"id": str(ann_id), "item_id": item, "annotator": "alice", "label": label,
                        "created_at": f"2026-01-01T00:00:{ann_id:02d}"}]}


def test_a_burst_of_events_is_one_retrain(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    for n in range(10):
        redis_store.append_event(P, label_event(n, f"i{n}", "pos" if n % 2 else "neg"))
    trainer = Trainer(redis_store, cache, coalesce_s=0.05, block_ms=100)
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
    trainer = Trainer(redis_store, cache, coalesce_s=0.01, block_ms=100)
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
    trainer = Trainer(redis_store, cache, coalesce_s=0.01, block_ms=100)
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
    trainer = Trainer(redis_store, cache, coalesce_s=0.01, block_ms=100)
    trainer.step(pending=True)
    trainer.step()
    assert redis_store.backlog(P) == 0
