"""Item vectors on a real Redis: the local cache first, then the text Redis keeps, then Label
Studio's task text; a vector is embedded once per cache, and an item with no text is an error."""

from __future__ import annotations

import numpy as np
import pytest

from loop.core.dataset import text_key
from loop.core.embeddings import DIM, key_for_hash
from loop.errors import LoopError
from loop.services.vectors import EmbeddingCache, ItemVectors

P = 5
TEXTS = {"i0": "refund my order", "i1": "where is my parcel", "i2": "reset my password"}


class CountingEmbedder:
    """A deterministic stand-in for the model: one vector per text, and a record of what it embedded."""

    batch_size = 64

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += list(texts)
        return np.stack([np.random.default_rng(len(t)).normal(size=DIM).astype(np.float32) for t in texts])


@pytest.fixture
def project(redis_store):
    redis_store.add_items(P, {i: {"task_id": 10 + n, "key": text_key(t)} for n, (i, t) in enumerate(TEXTS.items())},
                          texts=TEXTS)
    return redis_store


def test_vectors_missing_from_the_cache_are_embedded_once_from_the_texts_in_redis(project, tmp_path):
    embedder = CountingEmbedder()
    vectors = ItemVectors(project, EmbeddingCache(tmp_path / "c.sqlite"), embedder)
    X = vectors.matrix(P, ["i2", "i0", "i2"])
    assert X.shape == (3, DIM) and np.array_equal(X[0], X[2])
    assert sorted(embedder.seen) == ["refund my order", "reset my password"]
    again = vectors.matrix(P, ["i0", "i2"])
    assert np.array_equal(again, X[1:]) and len(embedder.seen) == 2  # from the cache now
    assert vectors.matrix(P, []).shape == (0, DIM)


def test_a_cached_vector_is_used_as_it_is(project, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    mine = np.full(DIM, 0.5, dtype=np.float32)
    cache.put_many({key_for_hash(text_key(TEXTS["i1"])): mine})
    embedder = CountingEmbedder()
    assert np.array_equal(ItemVectors(project, cache, embedder).matrix(P, ["i1"])[0], mine)
    assert embedder.seen == []


def test_texts_missing_from_redis_come_from_label_studio_and_are_kept(redis_store, tmp_path):
    redis_store.add_items(P, {i: {"task_id": 10 + n, "key": text_key(t)} for n, (i, t) in enumerate(TEXTS.items())})
    asked = []

    def ls_texts(p):
        asked.append(p)
        return {**TEXTS, "i1": "an edited task text"}  # i1's text no longer has the hash loop stored

    vectors = ItemVectors(redis_store, EmbeddingCache(tmp_path / "c.sqlite"), CountingEmbedder(), ls_texts=ls_texts)
    with pytest.raises(LoopError, match=r"1 items of project 5 \(e.g. 'i1'\) have no vector here and no text"):
        vectors.matrix(P, ["i0", "i1"])
    assert redis_store.item_texts(P, ["i0", "i1"]) == {"i0": TEXTS["i0"]}  # the good one is kept for next time
    vectors.matrix(P, ["i0", "i2"])
    assert asked == [P, P]


def test_unknown_items_are_an_error(project, tmp_path):
    vectors = ItemVectors(project, EmbeddingCache(tmp_path / "c.sqlite"), CountingEmbedder())
    with pytest.raises(LoopError, match=r"1 items \(e.g. 'nope'\) are not items of project 5"):
        vectors.matrix(P, ["i0", "nope"])
