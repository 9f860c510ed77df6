"""Benchmark of the select step of `loop next-round`: retrain, score the pool, pick, confidence.

The timed work is exactly the library calls `loop.workflows.rounds.next_round` makes once the embeddings are
loaded from the cache:

1. train       `loop.core.model.train(X_labelled, labels)`  (a fresh LogisticRegression each round)
2. select      `loop.core.strategies.select(strategy, clf, X_pool, size, seed)`  (scores the whole pool)
3. confidence  `clf.predict_proba(X_pool[picked])`  (the scores shown in Label Studio)

Syncing with Label Studio and publishing the round are not part of it. With `--store float32` (or
`float16`) the pool is first written to a columnar copy (`loop.services.vectors.PoolVectors`, in a
temp dir) and every run starts by reading the pool matrix from it as `ItemVectors.matrix` does:

0. load        `PoolVectors.rows(hashes)` then `.gather(rows)`  (memory-mapped .npy -> float32 matrix)

(the copy's hash index is built once per process, before the runs, and timed apart as `index s`).
Without `--store` the pool matrix is taken as given, as before.

By default the embeddings are SYNTHETIC: unit-normalised float32 vectors of dimension
`loop.core.embeddings.DIM` (384) drawn from a seeded mixture of Gaussian clusters, one cluster per
class. Real embeddings would need the sentence-transformer model and a large corpus, and the cost
of the select step depends on the shapes (pool size, labelled-set size, number of classes,
dimension), not on what the vectors mean. The one content-dependent part is how many L-BFGS
iterations training needs: the defaults of `--spread` and `--shared` are calibrated so that the
clusters overlap as much as real all-MiniLM-L6-v2 embeddings of the demo tickets do (about 30
iterations either way), and the iterations are reported so that runs can be compared.
`--real PATH` embeds a JSONL file with the real model instead (resampled to the pool sizes).

`--blas-threads N` caps the BLAS/OpenMP thread pools (threadpoolctl) during the runs, to compare
with the default of one thread per CPU that `loop` runs with today.

    python -m bench.next_round                        # 10k and 100k pools, 500 and 2000 labels
    python -m bench.next_round --pool 100000 --labels 2000 --repeats 10 --json
    python -m bench.next_round --blas-threads 1
    python -m bench.next_round --real examples/support_tickets.jsonl
    python -m bench.next_round --pool 1000000 --labels 2000 --strategy margin-diverse --store float32 --target 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from loop.core import model as model_lib
from loop.core.embeddings import DIM, DTYPE
from loop.core.strategies import STRATEGIES, select

# Calibrated on all-MiniLM-L6-v2 embeddings of examples/support_tickets.jsonl (see `synthetic`).
SPREAD = 1.9
SHARED = 0.87


# -- data -----------------------------------------------------------------------------------
def _unit(X: np.ndarray) -> np.ndarray:
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def synthetic(n_pool: int, n_labels: int, n_classes: int, *, spread: float, shared: float, seed: int,
              dim: int = DIM) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(X_labelled, labels, X_pool): a seeded mixture of `n_classes` Gaussian clusters on the unit sphere.

    A cluster centre is a random unit vector plus `shared` times one direction common to all
    classes (sentence embeddings share a mean direction, so different classes are not orthogonal);
    a point is its centre plus isotropic noise of norm about `spread`, then normalised. The defaults
    give a mean cosine of about 0.32 within a class and 0.14 across classes, which is what
    all-MiniLM-L6-v2 gives on examples/support_tickets.jsonl. Class sizes are uneven (Dirichlet
    weights), as in real labelling projects; every class appears in the labelled set at least once.
    """
    rng = np.random.default_rng(seed)
    common = _unit(rng.standard_normal((1, dim)))
    centres = _unit(rng.standard_normal((n_classes, dim))) + shared * common
    weights = rng.dirichlet(np.full(n_classes, 2.0))

    def draw(n: int, cls: np.ndarray) -> np.ndarray:
        X = centres[cls] + rng.standard_normal((n, dim)) * (spread / np.sqrt(dim))
        return _unit(X).astype(DTYPE)

    y_lab = rng.choice(n_classes, size=n_labels, p=weights)
    y_lab[:n_classes] = np.arange(n_classes)  # every class labelled at least once
    X_lab = draw(n_labels, y_lab)
    X_pool = draw(n_pool, rng.choice(n_classes, size=n_pool, p=weights))
    return X_lab, [f"class_{c:02d}" for c in y_lab], X_pool


_EMBEDDED: dict[tuple[str, str], np.ndarray] = {}


def real(path: Path, n_pool: int, n_labels: int, *, text_field: str, label_field: str,
         seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Embeddings of a JSONL file with the real model (cache in a temp dir), resampled to the sizes.

    Rows are drawn with replacement when the file is smaller than the pool: duplicates cost the
    same to score, so timings stay representative.
    """
    from loop.core.embeddings import Embedder, embed_texts
    from loop.services.vectors import EmbeddingCache

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get(text_field)]
    if not rows:
        raise SystemExit(f"{path}: no rows with a {text_field!r} field")
    lab_rows = [i for i, r in enumerate(rows) if r.get(label_field) is not None]
    if len({rows[i][label_field] for i in lab_rows}) < 2:
        raise SystemExit(f"{path}: needs at least two distinct values of {label_field!r} to train")
    key = (str(path), text_field)
    if key not in _EMBEDDED:  # embed once per run, not once per configuration
        with tempfile.TemporaryDirectory() as tmp:
            cache = EmbeddingCache(Path(tmp) / "embeddings.sqlite")
            _EMBEDDED[key], _ = embed_texts([r[text_field] for r in rows], cache, Embedder())
    X_all = _EMBEDDED[key]
    rng = np.random.default_rng(seed)
    li = rng.choice(lab_rows, size=n_labels, replace=n_labels > len(lab_rows))
    pi = rng.choice(len(rows), size=n_pool, replace=n_pool > len(rows))
    return X_all[li], [str(rows[i][label_field]) for i in li], X_all[pi]


# -- timing ---------------------------------------------------------------------------------
def run_once(X_lab: np.ndarray, y: list[str], X_pool, strategy: str, size: int,
             seed: int) -> dict[str, float]:
    """One round's select step; `X_pool` is a matrix, or a `Stored` pool read (timed) first."""
    t_load, c_load = time.perf_counter(), time.process_time()
    if isinstance(X_pool, Stored):
        X_pool = X_pool.read()
    t0, c0 = time.perf_counter(), time.process_time()
    clf = model_lib.train(X_lab, y)
    t1, c1 = time.perf_counter(), time.process_time()
    picked = select(strategy, clf, X_pool, size, seed=seed)
    t2, c2 = time.perf_counter(), time.process_time()
    proba = clf.predict_proba(X_pool[picked])
    _ = [(str(clf.classes_[row.argmax()]), float(row.max())) for row in proba]
    t3 = time.perf_counter()
    return {"load": t0 - t_load, "train": t1 - t0, "select": t2 - t1, "confidence": t3 - t2, "total": t3 - t0,
            "load_select_confidence": (t0 - t_load) + (t3 - t1), "n_iter": int(np.max(clf.n_iter_)),
            # CPU seconds of this process (all its threads): what contention from other processes does not inflate
            "load_cpu": c0 - c_load, "select_cpu": c2 - c1}


class Stored:
    """A pool written to a columnar copy (`PoolVectors`) in a temp dir; `read()` is what
    `ItemVectors.matrix` does with it: content hashes -> rows -> gathered float32 matrix."""

    def __init__(self, X_pool: np.ndarray, dtype: str, tmp: str):
        from loop.services.vectors import PoolVectors

        self.hashes = [f"{i:064x}" for i in range(len(X_pool))]
        self.columns = PoolVectors(Path(tmp), 1, dtype=np.dtype(dtype))
        t0 = time.perf_counter()
        self.columns.append(self.hashes, lambda a, b: X_pool[a:b])
        self.write_s = time.perf_counter() - t0
        self.file_bytes = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.suffix == ".npy")
        t0 = time.perf_counter()
        self.columns.rows(self.hashes[:1])  # builds the hash index once per process
        self.index_s = time.perf_counter() - t0

    def read(self) -> np.ndarray:
        return self.columns.gather(self.columns.rows(self.hashes))


def bench(X_lab, y, X_pool, *, strategy: str, size: int, repeats: int, seed: int) -> dict:
    run_once(X_lab, y, X_pool, strategy, size, seed)  # warm-up: imports, BLAS threads, page faults
    runs = [run_once(X_lab, y, X_pool, strategy, size, seed + r) for r in range(repeats)]

    def col(k):
        return [r[k] for r in runs]

    return {
        "total_median_s": statistics.median(col("total")),
        "total_max_s": max(col("total")),
        "load_median_s": statistics.median(col("load")),
        "load_cpu_median_s": statistics.median(col("load_cpu")),
        "select_cpu_median_s": statistics.median(col("select_cpu")),
        "load_select_confidence_median_s": statistics.median(col("load_select_confidence")),
        "load_select_confidence_max_s": max(col("load_select_confidence")),
        "train_median_s": statistics.median(col("train")),
        "select_median_s": statistics.median(col("select")),
        "confidence_median_s": statistics.median(col("confidence")),
        "lbfgs_iterations": max(col("n_iter")),
        "runs": runs,
    }


# -- reporting ------------------------------------------------------------------------------
def machine() -> dict:
    import sklearn

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "numpy": np.__version__, "scikit_learn": sklearn.__version__}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({f"{p.get('internal_api')} ({p.get('num_threads')} threads)"
                               for p in threadpool_info() if p.get("user_api") == "blas"})
    except ImportError:
        pass
    return info


def table(results: list[dict], target: float) -> str:
    stored = any(r.get("store") for r in results)
    head = ["pool", "labels", "classes", "strategy", "size", "median s", "max s", "train s",
            "score+select s", "confidence s", "lbfgs it", f"< {target:g} s"]
    if stored:
        head[-1:-1] = ["store", "index s", "load s", "load+select+conf. median s", "max s", "load cpu s",
                       "select cpu s"]
    rows = []
    for r in results:
        row = [f"{r['pool']:,}", f"{r['labels']:,}", str(r["classes"]), r["strategy"], str(r["size"]),
               f"{r['total_median_s']:.3f}", f"{r['total_max_s']:.3f}", f"{r['train_median_s']:.3f}",
               f"{r['select_median_s']:.3f}", f"{r['confidence_median_s']:.4f}", str(r["lbfgs_iterations"]),
               "yes" if r["meets_target"] else "NO"]
        if stored:
            row[-1:-1] = [r.get("store") or "-", f"{r['index_s']:.3f}" if r.get("store") else "-",
                          f"{r['load_median_s']:.3f}", f"{r['load_select_confidence_median_s']:.3f}",
                          f"{r['load_select_confidence_max_s']:.3f}", f"{r['load_cpu_median_s']:.3f}",
                          f"{r['select_cpu_median_s']:.3f}"]
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([fmt(head), sep, *map(fmt, rows)])


@contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


def _ints(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.next_round", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=_ints, default=[10_000, 100_000], help="pool sizes (default 10000,100000)")
    ap.add_argument("--labels", type=_ints, default=[500, 2000], help="labelled-set sizes (default 500,2000)")
    ap.add_argument("--classes", type=_ints, default=[20], help="numbers of classes, synthetic data only (default 20)")
    ap.add_argument("--strategy", default="margin", choices=sorted(STRATEGIES), help="query strategy (default margin)")
    ap.add_argument("--size", type=int, default=50, help="items picked per round (default 50)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed runs per configuration, after one warm-up (default 5)")
    ap.add_argument("--spread", type=float, default=SPREAD,
                    help=f"synthetic: noise norm around each cluster centre; higher = harder problem "
                         f"(default {SPREAD})")
    ap.add_argument("--shared", type=float, default=SHARED,
                    help=f"synthetic: weight of the direction all clusters share (default {SHARED})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=2.0, help="target seconds for the select step (default 2)")
    ap.add_argument("--real", type=Path, metavar="PATH",
                    help="JSONL file to embed with the real model instead of synthetic vectors")
    ap.add_argument("--text-field", default="text", help="with --real: the text field (default text)")
    ap.add_argument("--label-field", default="label", help="with --real: the label field (default label)")
    ap.add_argument("--blas-threads", type=int, metavar="N",
                    help="cap BLAS/OpenMP threads with threadpoolctl during the runs (default: library default, "
                         "one per CPU), to compare against what `loop` does today")
    ap.add_argument("--store", choices=["float32", "float16"],
                    help="read the pool matrix each run from a columnar copy of this dtype (PoolVectors); the "
                         "target then applies to load + select + confidence, training excluded")
    ap.add_argument("--json", action="store_true", help="print a JSON list of results instead of a table")
    args = ap.parse_args(argv)
    if args.size < 1 or args.repeats < 1:
        ap.error("--size and --repeats must be at least 1")
    if args.blas_threads is not None and args.blas_threads < 1:
        ap.error("--blas-threads must be at least 1")
    if not args.real and max(args.classes) > min(args.labels):
        ap.error("--classes must not exceed --labels: every class needs at least one label")
    load_before = os.getloadavg()

    results = []
    for n_pool in args.pool:
        for n_labels in args.labels:
            for n_classes in ([None] if args.real else args.classes):
                if args.real:
                    X_lab, y, X_pool = real(args.real, n_pool, n_labels, text_field=args.text_field,
                                            label_field=args.label_field, seed=args.seed)
                else:
                    X_lab, y, X_pool = synthetic(n_pool, n_labels, n_classes, spread=args.spread,
                                                  shared=args.shared, seed=args.seed)
                extra: dict = {"store": args.store}
                with tempfile.TemporaryDirectory(prefix="loop-bench-pool-") as tmp:
                    pool = X_pool
                    if args.store:
                        pool = Stored(X_pool, args.store, tmp)
                        extra |= {"store_write_s": pool.write_s, "index_s": pool.index_s,
                                  "store_file_bytes": pool.file_bytes}
                        if args.store == "float32":  # the copy gives back exactly the vectors written
                            assert np.array_equal(pool.read()[:1000], X_pool[:1000])
                    with _threads(args.blas_threads):
                        r = bench(X_lab, y, pool, strategy=args.strategy, size=args.size, repeats=args.repeats,
                                  seed=args.seed)
                    del pool
                timed = r["load_select_confidence_max_s"] if args.store else r["total_max_s"]
                results.append({"pool": n_pool, "labels": n_labels, "classes": len(set(y)),
                                "dim": X_pool.shape[1], "data": f"real:{args.real}" if args.real else "synthetic",
                                "strategy": args.strategy, "size": args.size, "repeats": args.repeats,
                                "blas_threads": args.blas_threads or "default",
                                "target_s": args.target, "meets_target": timed < args.target, **extra, **r})
                if not args.json:
                    print(f"  pool {n_pool:,} labels {n_labels:,}: median {r['total_median_s']:.3f} s",
                          file=sys.stderr, flush=True)
                del X_lab, X_pool

    m = {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    if args.json:
        print(json.dumps([{**r, "machine": m} for r in results], indent=2))
    else:
        print(f"\n{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, numpy {m['numpy']}, "
              f"scikit-learn {m['scikit_learn']}, BLAS {', '.join(m.get('blas', [])) or '?'}\n"
              f"data: {results[0]['data'] if results else '-'}; {args.repeats} runs after 1 warm-up; "
              f"BLAS threads: {args.blas_threads or 'default'}; "
              f"load average before/after: {load_before[0]:.2f}/{m['loadavg_after'][0]:.2f}\n")
        print(table(results, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
