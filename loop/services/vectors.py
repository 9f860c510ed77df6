"""Item vectors: the embedding of any item of a project, in any process that has the model.

Each process (the CLI on the host, the ML backend and the trainer in their containers) keeps its own
on-disk cache, `EmbeddingCache`: SQLite keyed by model and content hash, so a text is embedded once
per machine. What every process shares is Redis, and Redis holds each item's text
(`Store.item_texts`, written by `loop init`). `ItemVectors.matrix` reads the cache and embeds,
once, whatever the cache lacks, so a trainer started with an empty cache of its own trains all the
same (docs/benchmarks.md, "Item vectors", measures what that costs). Items stored before texts were
kept in Redis get theirs from Label Studio's tasks, checked against the content hash and written
back to Redis.

`ItemVectors` reads through `PoolVectors`, a columnar copy of the project's vectors next to the
cache: `.npy` matrices memory-mapped for reading, so a round over a million items gathers its pool
matrix with numpy instead of a SQLite row and an array object per item (docs/benchmarks.md,
"Vectors at scale"). Whatever that copy lacks (items added since, a new embedding model) comes from
the cache and the embedder as above, and is appended to it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import uuid
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from loop.core.dataset import text_key
from loop.core.embeddings import DIM, DTYPE, MODEL_ID, Embedder, embed_texts, key_for_hash, model_of
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


# How the columnar copy stores vectors. float32: what the model gives and the cache holds
# (float16 halves the files; docs/benchmarks.md "Vectors at scale" measures its label efficiency).
STORE_DTYPE = np.dtype(np.float32)
HASH_BYTES = 64                # a content hash (`dataset.text_key`): sha256 in hex
MAX_SEGMENTS = 8               # more appended segments than this are merged into one
GATHER_ROWS = 65_536           # rows gathered (and converted) at a time
WHOLE_PROJECT = 50_000         # asked for more items than this, `ItemVectors` reads all the project's at once


class PoolVectors:
    """A project's vectors as columns on disk, keyed by content hash, for one embedding model.

    Files in `root` (0700; files 0600): a manifest `p<P>-<model>.json` listing segments in row
    order, and per segment a matrix `<segment>.npy` (rows x DIM, `STORE_DTYPE`) and its rows'
    content hashes `<segment>.keys.npy`. Segments are written whole under temporary names, then
    listed by replacing the manifest (`os.replace`): a crash mid-write leaves the previous manifest
    and some unlisted files, removed by the next append. `<model>` is derived from `model`, the
    cache's key prefix of the engine (`embeddings.model_of`), so another model or embedding backend
    reads (and writes) other files, and its first write removes this project's copy of the old one.
    Appends and merges hold a lock file; readers take none (segments are never changed in place).
    """

    def __init__(self, root: str | Path, p: int, model: str = MODEL_ID, dtype: np.dtype | type = STORE_DTYPE):
        self.root, self.p, self.model, self.dtype = Path(root), int(p), model, np.dtype(dtype)
        digest = hashlib.sha256(self.model.encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9.-]+", "-", self.model).strip("-")[:40]
        self.prefix = f"p{self.p}-"
        self.name = f"{self.prefix}{slug}-{digest}"
        self.manifest_path = self.root / f"{self.name}.json"
        self._loaded: tuple | None = None  # (manifest text, segments, index)

    # -- reading ----------------------------------------------------------------------------
    def _manifest(self) -> dict | None:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
        except ValueError:
            return None  # never half-written (os.replace); a hand-edited file is rebuilt
        if (manifest.get("model"), manifest.get("dim"), manifest.get("dtype")) != (self.model, DIM, self.dtype.str):
            return None  # another model, dimension or dtype: these vectors are not ours
        return manifest

    def _load(self) -> tuple[list[np.ndarray], dict[str, int]]:
        """Memory-mapped segments and content hash -> row; built once per manifest."""
        for attempt in range(3):
            manifest = self._manifest()
            stamp = json.dumps(manifest, sort_keys=True)
            if self._loaded is not None and self._loaded[0] == stamp:
                return self._loaded[1], self._loaded[2]
            try:
                segments, keys = [], []
                for seg in (manifest or {}).get("segments", []):
                    # a plain ndarray over the mapping: indexing an np.memmap costs several times more
                    segments.append(np.asarray(np.load(self.root / f"{seg['name']}.npy", mmap_mode="r")))
                    keys.extend(k.decode() for k in np.load(self.root / f"{seg['name']}.keys.npy").tolist())
            except FileNotFoundError:  # merged away by another process since we read the manifest
                if attempt == 2:
                    raise
                continue
            index = dict(zip(keys, range(len(keys))))  # a hash twice (two appenders at once): either row
            self._loaded = (stamp, segments, index)
            return segments, index
        raise AssertionError("unreachable")

    def rows(self, hashes: Sequence[str]) -> np.ndarray:
        """Row of each content hash, -1 where this copy has none."""
        _, index = self._load()
        return np.fromiter(map(index.get, hashes, repeat(-1)), dtype=np.int64, count=len(hashes))

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The vectors at `rows` (all present), as a float32 matrix, read segment by segment from the
        segments `rows` was computed on (still readable if another process merged them meanwhile)."""
        segments = self._loaded[1] if self._loaded is not None else self._load()[0]
        out = np.empty((len(rows), DIM), dtype=DTYPE)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= sum(len(m) for m in segments):
            raise LoopError(f"rows up to {rows.max()} asked of the vector copy {self.manifest_path}, which has "
                            f"{sum(len(m) for m in segments)}; a bug: please report it")
        if len(segments) == 1:
            for start in range(0, len(rows), GATHER_ROWS):  # bounded temporaries when converting
                part = rows[start:start + GATHER_ROWS]
                if segments[0].dtype == DTYPE:  # straight into the result, no temporary
                    np.take(segments[0], part, axis=0, out=out[start:start + len(part)])
                else:
                    out[start:start + len(part)] = segments[0][part]
            return out
        bounds = np.cumsum([0] + [len(s) for s in segments])
        seg_of = np.searchsorted(bounds, rows, side="right") - 1
        for s, matrix in enumerate(segments):
            where = np.flatnonzero(seg_of == s)
            for start in range(0, len(where), GATHER_ROWS):
                chunk = where[start:start + GATHER_ROWS]
                out[chunk] = matrix[rows[chunk] - bounds[s]]
        return out

    def __len__(self) -> int:
        return sum(seg["rows"] for seg in (self._manifest() or {}).get("segments", []))

    # -- writing ----------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        fd = os.open(self.root / f"{self.prefix}lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write_npy(self, name: str, array_or_shape, dtype: np.dtype, fill=None) -> None:
        """`name` written whole under a temporary name, then renamed; `fill(out)` writes the rows."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{self.prefix}", suffix=".tmp")  # 0600
        os.close(fd)
        try:
            if fill is None:
                with open(tmp, "wb") as f:
                    np.save(f, array_or_shape, allow_pickle=False)
            else:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=array_or_shape)
                fill(out)
                out.flush()
                del out
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.root / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _write_manifest(self, segments: list[dict]) -> None:
        text = json.dumps({"format": 1, "model": self.model, "dim": DIM, "dtype": self.dtype.str,
                           "segments": segments})
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{self.prefix}", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)

    def _new_segment(self, hashes: Sequence[str], fill) -> dict:
        name = f"{self.name}-{uuid.uuid4().hex[:12]}"
        self._write_npy(f"{name}.keys.npy", np.asarray(hashes, dtype=f"S{HASH_BYTES}"), None)
        self._write_npy(f"{name}.npy", (len(hashes), DIM), self.dtype, fill)
        return {"name": name, "rows": len(hashes)}

    def _sweep(self, keep: list[dict]) -> None:
        """Remove this project's files that the manifest does not list: other models' copies,
        merged segments, and what a crash left. Only under the lock (no writer is mid-write)."""
        listed = {self.manifest_path.name, f"{self.prefix}lock"}
        for seg in keep:
            listed |= {f"{seg['name']}.npy", f"{seg['name']}.keys.npy"}
        for path in self.root.iterdir():
            if path.name.startswith((self.prefix, f".{self.prefix}")) and path.name not in listed:
                path.unlink(missing_ok=True)

    def append(self, hashes: Sequence[str], vectors: Callable[[int, int], np.ndarray]) -> None:
        """Add rows: content hashes, and `vectors(start, stop)` giving rows start:stop of their
        float32 vectors (called in chunks, so a million rows never sit in memory as objects)."""
        if not len(hashes):
            return
        with self._locked():
            segments = list((self._manifest() or {}).get("segments", []))

            def fill(out):
                for start in range(0, len(hashes), GATHER_ROWS):
                    stop = min(start + GATHER_ROWS, len(hashes))
                    out[start:stop] = vectors(start, stop)

            segments.append(self._new_segment(hashes, fill))
            if len(segments) > MAX_SEGMENTS:
                segments = [self._merge(segments)]
            self._write_manifest(segments)
            self._sweep(segments)

    def _merge(self, segments: list[dict]) -> dict:
        keys = np.concatenate([np.load(self.root / f"{s['name']}.keys.npy") for s in segments])
        mats = [np.load(self.root / f"{s['name']}.npy", mmap_mode="r") for s in segments]

        def fill(out):
            row = 0
            for m in mats:
                for start in range(0, len(m), GATHER_ROWS):
                    chunk = m[start:start + GATHER_ROWS]
                    out[row:row + len(chunk)] = chunk
                    row += len(chunk)

        return self._new_segment(keys, fill)


class ItemVectors:
    """Vectors of a project's items by item id: from the local cache, else embedded from the text
    Redis keeps (else Label Studio's task text), then cached.

    `ls_texts(p)` gives item id -> text from Label Studio's tasks; None where no Label Studio is
    reachable (the texts in Redis must then suffice).
    """

    def __init__(self, store, cache: EmbeddingCache, embedder: Embedder,
                 ls_texts: Callable[[int], dict[str, str]] | None = None, columns: str | Path | None = None,
                 dtype: np.dtype | type = STORE_DTYPE):
        self.store, self.cache, self.embedder, self.ls_texts = store, cache, embedder, ls_texts
        self.columns_dir = Path(columns) if columns is not None else Path(cache.path).parent / "vectors"
        self.model, self.dtype = model_of(embedder), np.dtype(dtype)  # the embedder's cache keys
        self._columns: dict[int, PoolVectors] = {}

    def columns(self, p: int) -> PoolVectors:
        """Project p's columnar copy for this embedder (kept while this object lives: its index too)."""
        if p not in self._columns:
            self._columns[p] = PoolVectors(self.columns_dir, p, self.model, self.dtype)
        return self._columns[p]

    def matrix(self, p: int, item_ids: Sequence[str], progress: Callable[[int], None] | None = None, *,
               items: dict[str, dict] | None = None) -> np.ndarray:
        """Vectors of `item_ids` in order, shape (len(item_ids), DIM), float32.

        Read from the project's columnar copy (`PoolVectors`); what it lacks is read from the cache
        (or embedded) and appended to it first, so every caller gets the same vector for an item.
        `items`: `store.items(p)` when the caller has it already (else those of `item_ids` are read).
        Raises LoopError, naming how many and one example, for ids that are not items of project p
        or whose text cannot be found with the content hash `loop init` stored.
        """
        if not len(item_ids):
            return np.empty((0, DIM), dtype=DTYPE)
        if items is None:  # the requested items only, unless that is most of a large project
            items = self.store.items(p) if len(item_ids) > WHOLE_PROJECT else self.store.items_by_id(p, item_ids)
        try:
            hashes = [items[i]["key"] for i in item_ids]
        except KeyError:
            unknown = [i for i in item_ids if i not in items]
            raise LoopError(f"{len(unknown)} items (e.g. {unknown[0]!r}) are not items of project {p}; "
                            "`loop init` on the data file adds them") from None
        pool = self.columns(p)
        rows = pool.rows(hashes)
        if (rows < 0).any():
            item_of: dict[str, str] = {}  # content hash -> one item with that text
            for i, r in zip(item_ids, rows):
                if r < 0:
                    item_of.setdefault(items[i]["key"], i)
            new_hashes = list(item_of)
            pool.append(new_hashes, lambda a, b: self._from_cache(p, [item_of[h] for h in new_hashes[a:b]], items,
                                                                  progress))
            rows = pool.rows(hashes)
        return pool.gather(rows)

    def _from_cache(self, p: int, item_ids: list[str], items: dict[str, dict],
                    progress: Callable[[int], None] | None) -> np.ndarray:
        """Vectors of `item_ids` from the cache, embedding (texts from Redis or Label Studio) what it lacks."""
        keys = [key_for_hash(items[i]["key"], self.model) for i in item_ids]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        lacking = list(dict.fromkeys(i for i, k in zip(item_ids, keys) if k not in found))
        if lacking:
            texts = self._texts(p, lacking, items)
            vectors, _ = embed_texts([texts[i] for i in lacking], self.cache, self.embedder, progress=progress)
            found.update({key_for_hash(items[i]["key"], self.model): v for i, v in zip(lacking, vectors)})
        return np.stack([found[k] for k in keys]) if keys else np.empty((0, DIM), dtype=DTYPE)

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
