"""Embedding through a cache: what is cached is looked up, never embedded again."""

from __future__ import annotations

import numpy as np

from loop.core.embeddings import DIM, cache_key, cached_matrix, embed_texts


class DictCache(dict):
    def get_many(self, keys):
        return {k: self[k] for k in keys if k in self}

    def put_many(self, vectors):
        self.update(vectors)


class Counting:
    batch_size = 64

    def __init__(self):
        self.texts = []

    def encode(self, texts):
        self.texts += list(texts)
        return np.ones((len(texts), DIM), dtype=np.float32) * np.arange(1, len(texts) + 1)[:, None]


def test_cached_matrix_is_a_lookup_or_nothing():
    cache = DictCache({cache_key("a"): np.full(DIM, 1.0, np.float32), cache_key("b"): np.full(DIM, 2.0, np.float32)})
    X = cached_matrix(["b", "a", "b"], cache)
    assert X.shape == (3, DIM) and X[:, 0].tolist() == [2.0, 1.0, 2.0]
    assert cached_matrix(["a", "new"], cache) is None
    assert cached_matrix([], cache).shape == (0, DIM)


def test_embed_texts_embeds_only_what_the_cache_lacks_once():
    cache, model = DictCache(), Counting()
    X, new = embed_texts(["x", "y", "x"], cache, model)
    assert new == 2 and model.texts == ["x", "y"] and np.array_equal(X[0], X[2])
    _, again = embed_texts(["y", "x"], cache, model)
    assert again == 0 and model.texts == ["x", "y"]
