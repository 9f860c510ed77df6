"""Item vectors on a real Redis: the local cache first, then the text Redis keeps, then Label
Studio's task text; a vector is embedded once per cache, and an item with no text is an error.
Then the columnar copy every read goes through (`PoolVectors`): round trip, appends, another model,
file modes, a crash mid-write, and the same selections as from the cache."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans

from loop.core.dataset import text_key
from loop.core.embeddings import DIM, key_for_hash
from loop.core.learning import choose_batch
from loop.core.strategies import diverse_top, top_n
from loop.errors import LoopError
from loop.services.vectors import EmbeddingCache, ItemVectors, PoolVectors

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


# -- the columnar copy ----------------------------------------------------------------------
def hashes(n: int, start: int = 0) -> list[str]:
    return [text_key(f"text {k}") for k in range(start, start + n)]


def unit_rows(n: int, seed: int) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_copy_gives_back_what_was_written_in_any_order_and_appends(tmp_path):
    X, Y = unit_rows(300, 0), unit_rows(40, 1)
    pool = PoolVectors(tmp_path / "vectors", P)
    assert len(pool) == 0 and (pool.rows(hashes(2)) == -1).all()
    calls = []
    pool.append(hashes(300), lambda a, b: calls.append((a, b)) or X[a:b])
    order = np.random.default_rng(2).permutation(300)
    assert np.array_equal(pool.gather(pool.rows([hashes(300)[i] for i in order])), X[order])
    pool.append(hashes(40, start=300), lambda a, b: Y[a:b])  # items added: a second segment
    assert len(pool) == 340 and len(list((tmp_path / "vectors").glob("*.keys.npy"))) == 2
    both = hashes(340)
    assert np.array_equal(pool.gather(pool.rows(both[::-1])), np.vstack([X, Y])[::-1])
    # another process (a fresh object) reads the same
    assert np.array_equal(PoolVectors(tmp_path / "vectors", P).gather(np.arange(340)), np.vstack([X, Y]))
    assert (PoolVectors(tmp_path / "vectors", P + 1).rows(both[:3]) == -1).all()  # per project
    with pytest.raises(LoopError, match="rows up to 340 asked of the vector copy"):
        pool.gather(np.array([0, 340]))


def test_many_appends_are_merged_into_one_segment_with_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setattr("loop.services.vectors.MAX_SEGMENTS", 3)
    pool = PoolVectors(tmp_path, P)
    parts = [unit_rows(5, k) for k in range(5)]
    for k, part in enumerate(parts):
        pool.append(hashes(5, start=5 * k), lambda a, b, part=part: part[a:b])
    assert len(list(tmp_path.glob("*.keys.npy"))) == 2  # 4 merged into 1, then the fifth
    assert np.array_equal(pool.gather(pool.rows(hashes(25))), np.vstack(parts))


def test_float16_halves_the_file_and_rounds_only(tmp_path):
    X = unit_rows(200, 3)
    p32, p16 = PoolVectors(tmp_path / "a", P), PoolVectors(tmp_path / "b", P, dtype=np.float16)
    p32.append(hashes(200), lambda a, b: X[a:b])
    p16.append(hashes(200), lambda a, b: X[a:b])
    back = p16.gather(np.arange(200))
    assert back.dtype == np.float32 and np.abs(back - X).max() < 1e-3 and not np.array_equal(back, X)
    size = lambda d: sum(f.stat().st_size for f in d.glob("*.npy") if not f.name.endswith(".keys.npy"))  # noqa: E731
    assert size(tmp_path / "b") < 0.51 * size(tmp_path / "a")
    # a copy written as float32 is not read as float16 (nor the other way round)
    assert len(PoolVectors(tmp_path / "a", P, dtype=np.float16)) == 0


def test_files_are_private(tmp_path):
    root = tmp_path / "vectors"
    PoolVectors(root, P).append(hashes(3), lambda a, b: unit_rows(3, 0)[a:b])
    assert mode(root) == 0o700
    files = list(root.iterdir())
    assert len(files) == 4 and all(mode(f) == 0o600 for f in files)  # manifest, lock, matrix, keys


def test_another_model_key_reads_nothing_and_replaces_the_old_files(project, tmp_path):
    embedder = CountingEmbedder()
    vectors = ItemVectors(project, EmbeddingCache(tmp_path / "c.sqlite"), embedder)
    X = vectors.matrix(P, ["i0", "i1"])
    old = sorted(f.name for f in (tmp_path / "vectors").iterdir())
    assert len(vectors.columns(P)) == 2 and len(embedder.seen) == 2
    embedder.model_id = "all-MiniLM-L6-v2+onnx"  # another embedding backend: other cache keys
    assert len(PoolVectors(tmp_path / "vectors", P, embedder.model_id)) == 0
    again = ItemVectors(project, EmbeddingCache(tmp_path / "c.sqlite"), embedder).matrix(P, ["i0", "i1"])
    assert len(embedder.seen) == 4  # the cache is keyed by model too: embedded again, not read from the old copy
    assert np.array_equal(again, X)  # (the stand-in embedder gives the same vectors)
    new = sorted(f.name for f in (tmp_path / "vectors").iterdir())
    assert not set(new) & (set(old) - {f"p{P}-lock"})  # the old model's copy is gone


def test_items_added_later_are_appended_not_rewritten(project, tmp_path):
    embedder = CountingEmbedder()
    vectors = ItemVectors(project, EmbeddingCache(tmp_path / "c.sqlite"), embedder)
    first = vectors.matrix(P, ["i0"])
    keys_files = set((tmp_path / "vectors").glob("*.keys.npy"))
    project.add_items(P, {"i3": {"task_id": 13, "key": text_key("cancel my plan")}}, texts={"i3": "cancel my plan"})
    X = vectors.matrix(P, ["i3", "i0", "i1"])
    assert np.array_equal(X[1], first[0])
    assert embedder.seen == ["refund my order", "cancel my plan", "where is my parcel"]
    assert keys_files < set((tmp_path / "vectors").glob("*.keys.npy"))  # the first segment is kept as it was
    assert len(vectors.columns(P)) == 3


CRASH = """
import os, sys
import numpy as np
from loop.core.dataset import text_key
from loop.services.vectors import PoolVectors
import loop.services.vectors as v
v.GATHER_ROWS = 10
def rows(a, b):
    if a >= 20:
        os._exit(9)  # killed mid-write: no cleanup runs
    return np.ones((b - a, v.DIM), dtype=np.float32)
PoolVectors(sys.argv[1], int(sys.argv[2])).append([text_key(f"crash {k}") for k in range(50)], rows)
"""


def test_a_crash_mid_write_leaves_the_copy_as_it_was(tmp_path):
    X = unit_rows(30, 4)
    pool = PoolVectors(tmp_path, P)
    pool.append(hashes(30), lambda a, b: X[a:b])
    before = sorted(f.name for f in tmp_path.iterdir())
    done = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), str(P)], cwd=Path(__file__).parents[2])
    assert done.returncode == 9
    assert sorted(f.name for f in tmp_path.iterdir()) != before  # it left something behind...
    fresh = PoolVectors(tmp_path, P)
    assert len(fresh) == 30 and np.array_equal(fresh.gather(fresh.rows(hashes(30))), X)  # ...that nobody reads
    assert (fresh.rows([text_key("crash 0")]) == -1).all()
    fresh.append(hashes(5, start=30), lambda a, b: X[a:b])  # the next append sweeps the leftovers
    assert len([f for f in tmp_path.iterdir() if f.name.startswith(".")]) == 0
    assert len(list(tmp_path.glob("*.npy"))) == 4


def test_an_error_while_appending_writes_nothing(project, tmp_path):
    pool = PoolVectors(tmp_path, P)
    pool.append(hashes(3), lambda a, b: unit_rows(3, 0)[a:b])

    def broken(a, b):
        raise LoopError("no text")

    with pytest.raises(LoopError):
        pool.append(hashes(3, start=3), broken)
    assert len(pool) == 3 and not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


# -- the same selections ----------------------------------------------------------------------
def test_next_rounds_selection_from_the_copy_is_the_one_from_the_cache(redis_store, tmp_path):
    """next-round's pool matrix, read through the copy, is bit for bit the cache's, so choose_batch
    picks the same items for the same seed."""
    n = 600
    texts = {f"s{k:03d}": f"sample ticket {k}" for k in range(n)}
    redis_store.add_items(P, {i: {"task_id": k, "key": text_key(t)} for k, (i, t) in enumerate(texts.items())},
                          texts=texts)
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    centres = unit_rows(4, 9)
    vecs = {i: centres[k % 4] + 0.6 * unit_rows(1, k)[0] for k, i in enumerate(texts)}
    cache.put_many({key_for_hash(text_key(texts[i])): v.astype(np.float32) for i, v in vecs.items()})
    ids = sorted(texts)
    lab, pool = ids[:80], ids[80:]
    y = [f"c{int(i[1:]) % 4}" for i in lab]
    from_cache = lambda sel: np.stack([cache.get_many([key_for_hash(text_key(texts[i]))])[  # noqa: E731
        key_for_hash(text_key(texts[i]))] for i in sel])
    vectors = ItemVectors(redis_store, cache, CountingEmbedder())
    X_lab, X_pool = vectors.matrix(P, lab), vectors.matrix(P, pool)
    assert np.array_equal(X_pool, from_cache(pool)) and np.array_equal(X_lab, from_cache(lab))
    for seed in range(3):
        for strategy in ("margin-diverse", "margin", "entropy-diverse"):
            a = choose_batch(X_lab, y, X_pool, 20, strategy, seed=seed).picked
            b = choose_batch(from_cache(lab), y, from_cache(pool), 20, strategy, seed=seed).picked
            assert np.array_equal(a, b)


def test_the_diversity_step_on_one_thread_clusters_as_before():
    """diverse_top runs k-means on one thread (docs/benchmarks.md, "Vectors at scale"): the picks
    are those of k-means with the library's default threads, as before."""
    X = unit_rows(2000, 5)
    scores = np.random.default_rng(6).random(2000)
    for seed in range(3):
        n = 20 + 10 * seed
        shortlist = top_n(scores, n * 10)
        state = int(np.random.default_rng(seed).integers(2**31))
        km = KMeans(n_clusters=n, n_init=1, random_state=state).fit(X[shortlist])
        before = [shortlist[km.labels_ == c][np.argmax(scores[shortlist[km.labels_ == c]])] for c in range(n)
                  if (km.labels_ == c).any()]
        before = np.asarray(before)[np.argsort(-scores[before], kind="stable")]
        assert np.array_equal(diverse_top(scores, X, n, np.random.default_rng(seed)), before)
