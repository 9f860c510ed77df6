"""Item vectors: the embedding of any item of a project, in any process that has the model.

Each process (the CLI on the host, the ML backend and the trainer in their containers) keeps its own
on-disk cache, `EmbeddingCache`: SQLite keyed by model and content hash, so a text is embedded once
per machine. What every process shares is Redis, and Redis holds each item's text
(`Store.item_texts`, written by `loop init`). `ItemVectors.matrix` reads the cache and embeds,
once, whatever the cache lacks, so a trainer started with an empty cache of its own trains all the
same (docs/benchmarks.md, "Item vectors", measures what that costs). Items stored before texts were
kept in Redis get theirs from Label Studio's tasks, checked against the content hash and written
back to Redis.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from loop.core.dataset import text_key
from loop.core.embeddings import DIM, DTYPE, Embedder, embed_texts, key_for_hash
from loop.errors import LoopError


class EmbeddingCache:
    """key -> vector, in SQLite (WAL, so readers never block the writer)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        os.chmod(self.path, 0o600)  # the texts' vectors are the owner's data (SQLite makes its WAL files alike)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        conn = self._conn()
        for start in range(0, len(keys), 900):  # SQLite's bound-variable limit
            chunk = list(keys[start:start + 900])
            marks = ",".join("?" * len(chunk))
            for key, blob in conn.execute(f"SELECT key, vec FROM embeddings WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=DTYPE)
        return found

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        with self._conn() as conn:
            conn.executemany("INSERT OR REPLACE INTO embeddings (key, vec) VALUES (?, ?)",
                             [(k, np.ascontiguousarray(v, dtype=DTYPE).tobytes()) for k, v in vectors.items()])

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]


class ItemVectors:
    """Vectors of a project's items by item id: from the local cache, else embedded from the text
    Redis keeps (else Label Studio's task text), then cached.

    `ls_texts(p)` gives item id -> text from Label Studio's tasks; None where no Label Studio is
    reachable (the texts in Redis must then suffice).
    """

    def __init__(self, store, cache: EmbeddingCache, embedder: Embedder,
                 ls_texts: Callable[[int], dict[str, str]] | None = None):
        self.store, self.cache, self.embedder, self.ls_texts = store, cache, embedder, ls_texts

    def matrix(self, p: int, item_ids: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Vectors of `item_ids` in order, shape (len(item_ids), DIM).

        Raises LoopError, naming how many and one example, for ids that are not items of project p
        or whose text cannot be found with the content hash `loop init` stored.
        """
        if not len(item_ids):
            return np.empty((0, DIM), dtype=DTYPE)
        items = self.store.items(p)
        unknown = [i for i in item_ids if i not in items]
        if unknown:
            raise LoopError(f"{len(unknown)} items (e.g. {unknown[0]!r}) are not items of project {p}; "
                            "`loop init` on the data file adds them")
        keys = [key_for_hash(items[i]["key"]) for i in item_ids]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        lacking = list(dict.fromkeys(i for i, k in zip(item_ids, keys) if k not in found))
        if lacking:
            texts = self._texts(p, lacking, items)
            vectors, _ = embed_texts([texts[i] for i in lacking], self.cache, self.embedder, progress=progress)
            found.update({key_for_hash(items[i]["key"]): v for i, v in zip(lacking, vectors)})
        return np.stack([found[k] for k in keys])

    def _texts(self, p: int, item_ids: list[str], items: dict[str, dict]) -> dict[str, str]:
        """Texts of `item_ids` whose content hash is the stored one: Redis first, then Label Studio."""
        def matching(texts: dict[str, str]) -> dict[str, str]:
            return {i: t for i, t in texts.items() if i in items and text_key(t) == items[i]["key"]}

        texts = matching(self.store.item_texts(p, item_ids))
        missing = [i for i in item_ids if i not in texts]
        if missing and self.ls_texts is not None:
            wanted = set(missing)
            from_ls = matching({i: t for i, t in self.ls_texts(p).items() if i in wanted})
            self.store.add_item_texts(p, from_ls)  # once: the next process finds them in Redis
            texts.update(from_ls)
            missing = [i for i in item_ids if i not in texts]
        if missing:
            raise LoopError(f"{len(missing)} items of project {p} (e.g. {missing[0]!r}) have no vector here and no "
                            "text to embed (none in Redis, nor in Label Studio with the text `loop init` saw); "
                            "re-run `loop init` on the project's data file")
        return texts
