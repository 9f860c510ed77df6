"""Embedding through a cache: what is cached is looked up, never embedded again; each engine has its
own keys; pooling as sentence-transformers does it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from loop.core.embeddings import (
    BACKENDS,
    DIM,
    MODEL_ID,
    Embedder,
    cache_key,
    cached_matrix,
    embed_texts,
    for_engine,
    key_for_hash,
    mean_pool,
    model_id,
    model_of,
)
from loop.errors import ConfigError


class DictCache(dict):
    def get_many(self, keys):
        return {k: self[k] for k in keys if k in self}

    def put_many(self, vectors):
        self.update(vectors)


class Counting:
    batch_size = 64

    def __init__(self, model=None, value=1.0):
        self.texts = []
        self.value = value
        if model is not None:
            self.model_id = model

    def encode(self, texts):
        self.texts += list(texts)
        return self.value * np.ones((len(texts), DIM), dtype=np.float32) * np.arange(1, len(texts) + 1)[:, None]


def test_cached_matrix_is_a_lookup_or_nothing():
    cache = DictCache({cache_key("a", MODEL_ID): np.full(DIM, 1.0, np.float32),
                       cache_key("b", MODEL_ID): np.full(DIM, 2.0, np.float32)})
    X = cached_matrix(["b", "a", "b"], cache, MODEL_ID)
    assert X.shape == (3, DIM) and X[:, 0].tolist() == [2.0, 1.0, 2.0]
    assert cached_matrix(["a", "new"], cache, MODEL_ID) is None
    assert cached_matrix([], cache, MODEL_ID).shape == (0, DIM)
    assert cached_matrix(["a"], cache, model_id("onnx-int8")) is None  # another engine's vectors are not these


def test_embed_texts_embeds_only_what_the_cache_lacks_once():
    cache, model = DictCache(), Counting()
    X, new = embed_texts(["x", "y", "x"], cache, model)
    assert new == 2 and model.texts == ["x", "y"] and np.array_equal(X[0], X[2])
    _, again = embed_texts(["y", "x"], cache, model)
    assert again == 0 and model.texts == ["x", "y"]


def test_each_engine_has_its_own_keys_so_vectors_never_mix():
    ids = [model_id(b) for b in BACKENDS]
    assert len(set(ids)) == len(BACKENDS) and model_id("torch") == MODEL_ID  # old caches stay the torch engine's
    cache = DictCache()
    torch_like, int8_like = Counting(), Counting(model_id("onnx-int8"), value=-1.0)
    X, _ = embed_texts(["same text"], cache, torch_like)
    Y, new = embed_texts(["same text"], cache, int8_like)
    assert new == 1 and int8_like.texts == ["same text"]  # embedded again, not read from the torch engine's key
    assert X[0, 0] == 1.0 and Y[0, 0] == -1.0 and len(cache) == 2
    int8 = model_id("onnx-int8")
    assert set(cache) == {cache_key("same text", MODEL_ID), cache_key("same text", int8)}
    assert cache_key("same text", int8) == key_for_hash(cache_key("same text", MODEL_ID).split(":", 1)[1], int8)
    assert cached_matrix(["same text"], cache, model_of(int8_like))[0, 0] == -1.0


def test_keys_stored_under_one_engine_are_read_under_the_current_one():
    # A dev set keyed at `loop init` under torch, read after LOOP_EMBEDDING_BACKEND became onnx-int8.
    stored = [cache_key("dev one", MODEL_ID), cache_key("dev two", MODEL_ID)]
    int8 = model_id("onnx-int8")
    assert for_engine(stored, int8) == [cache_key("dev one", int8), cache_key("dev two", int8)]
    assert for_engine(stored, MODEL_ID) == stored


def test_a_stand_in_without_model_id_counts_as_the_torch_model():
    assert model_of(Counting()) == MODEL_ID and model_of(Counting("m+x")) == "m+x"


@pytest.mark.parametrize("backend", ["gpu", "ONNX", ""])
def test_an_unknown_backend_is_refused_by_name(backend):
    with pytest.raises(ConfigError, match="LOOP_EMBEDDING_BACKEND") as exc:
        Embedder(backend=backend)
    assert repr(backend) in str(exc.value) and "'onnx-int8'" in str(exc.value)


def test_an_onnx_engine_needs_its_file():
    with pytest.raises(ConfigError, match="onnx_model.embedder"):
        Embedder(backend="onnx")


def test_an_embedder_pickles_without_its_model():
    e = Embedder(32, backend="onnx-int8", onnx_file="/nowhere/m.onnx")
    e._model = object()  # as if loaded
    copy = pickle.loads(pickle.dumps(e))
    assert copy._model is None and (copy.batch_size, copy.backend, copy.model_id) == (32, "onnx-int8", e.model_id)
    assert copy._lock is not e._lock


def test_mean_pool_averages_the_kept_tokens_and_normalises():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 4, DIM)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    tokens[0, 2:] = 1e6  # padding: must not count
    out = mean_pool(tokens, mask)
    want = np.stack([tokens[0, :2].mean(0), tokens[1].mean(0)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert out.dtype == np.float32 and np.allclose(out, want, atol=1e-6)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
