"""Benchmark of approximate nearest neighbours for the near-duplicate and leakage search: recall of
the pairs above the threshold against exact `near_pairs`, and build + query time, for loop's
index (`near_pairs(method="ann")`), FAISS's own indexes and hnswlib.

Methods (`--methods`, comma-separated):
  exact        `near_pairs(method="exact")`: the tiled exact scan (the reference).
  loop-ivf     `near_pairs(method="ann", probes=P)`: FAISS k-means cells, exact sgemm per cell.
  faiss-ivf    faiss.IndexIVFFlat (inner product, same number of cells, nprobe=P) + range_search.
  faiss-hnsw   faiss.IndexHNSWFlat (M=32, efConstruction=80, efSearch=128) + range_search.
  hnswlib-K    hnswlib (space "ip", M=16, ef_construction=100, ef=max(2K, 64)): K nearest, then
               the threshold (it has no range search: a row with more than K-1 near-duplicates
               loses some).

Parts:
1. banking77   train + test (../shared/data/banking77) embedded with the installed model through
               an EmbeddingCache (`--cache` to reuse one): near-duplicates within train + test,
               and leakage (train against test). Exact search is the reference.
2. synthetic   `--n` SYNTHETIC unit rows of dimension 384 (a seeded mixture of `--clusters`
               Gaussian clusters with bench.next_round's spread, calibrated to all-MiniLM-L6-v2)
               with planted near-duplicate groups: n/200 source rows, each with 1 to 7 noisy
               copies (noise norm 0.1 to 0.35: cosine to the source 0.94 to 0.995). Exact search
               over 1M rows takes hours, so the reference is exact search for a sample of
               `--queries` rows (half from the planted groups) against all rows, and recall is
               over the pairs that involve a sampled row. loop-ivf runs on all rows (timed in
               full); faiss-ivf, faiss-hnsw and hnswlib build on all rows and query the sample
               only, so their query time for all rows is extrapolated (`query_s_all_est`).
3. cutover     exact vs loop-ivf on synthetic sets of `--sizes` rows (within-set search): where
               the index starts to pay (loop.core.neighbours.EXACT_MAX_SCORES).

    nice -n 10 python -m bench.ann --part banking77 --cache .loop/embeddings.sqlite
    nice -n 10 python -m bench.ann --part synthetic --n 1000000 --methods loop-ivf
    nice -n 10 python -m bench.ann --part cutover --sizes 5000,10000,20000,40000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.next_round import SHARED, SPREAD, _threads, machine
from loop.core.embeddings import DIM
from loop.core.neighbours import PROBES, TOLERANCE, near_pairs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "banking77"
Pairs = set[tuple[int, int]]


# -- data -----------------------------------------------------------------------------------
def mixture(n: int, clusters: int, seed: int, dim: int = DIM, chunk: int = 50_000) -> np.ndarray:
    """n unit rows from `clusters` Gaussian clusters (bench.next_round.synthetic's model: centres
    share a common direction, isotropic noise of norm SPREAD), drawn in float32 chunks so 1M rows
    need 1.5 GB, not the 9 GB of float64 temporaries."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    common /= np.linalg.norm(common)
    centres = rng.standard_normal((clusters, dim))
    centres = (centres / np.linalg.norm(centres, axis=1, keepdims=True) + SHARED * common).astype(np.float32)
    weights = rng.dirichlet(np.full(clusters, 2.0))
    X = np.empty((n, dim), dtype=np.float32)
    for r in range(0, n, chunk):
        k = min(chunk, n - r)
        block = centres[rng.choice(clusters, size=k, p=weights)]
        block += rng.standard_normal((k, dim), dtype=np.float32) * np.float32(SPREAD / np.sqrt(dim))
        X[r:r + k] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return X


def planted(n: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, rows of the planted groups): n // 200 source rows, each with 1 to 7 noisy copies."""
    X = mixture(n, clusters, seed)
    rng = np.random.default_rng(seed + 1)
    groups = max(1, n // 200)
    sizes = rng.integers(1, 8, size=groups)
    rows = rng.choice(n, size=groups + int(sizes.sum()), replace=False)
    sources, copies = rows[:groups], rows[groups:]
    noise = rng.uniform(0.1, 0.35, size=len(copies)).astype(np.float32)
    E = rng.standard_normal((len(copies), X.shape[1]), dtype=np.float32)
    E *= (noise / np.linalg.norm(E, axis=1))[:, None]
    C = X[np.repeat(sources, sizes)] + E
    X[copies] = C / np.linalg.norm(C, axis=1, keepdims=True)
    return X, rows


# -- methods: each returns (pairs, build seconds, query seconds) ------------------------------
def _cells(m: int, probes: int) -> int:
    return max(1, min(m, round(np.sqrt(probes * m))))  # as loop.core.neighbours._index_pairs


def _within(i: int, js, skip_self: bool) -> list[tuple[int, int]]:
    return [(min(i, int(j)), max(i, int(j))) if skip_self else (i, int(j)) for j in js if not skip_self or j != i]


def timed(method: str, *args) -> tuple[Pairs, float, float, float]:
    """run(method, *args) and the CPU seconds of this process it took (all threads): on a
    contended machine wall time depends on the neighbours, CPU time much less."""
    cpu = time.process_time()
    got, build, query = run(method, *args)
    return got, build, query, time.process_time() - cpu


def run(method: str, X: np.ndarray, threshold: float, Y: np.ndarray | None, queries: np.ndarray | None,
        probes: int, seed: int) -> tuple[Pairs, float, float]:
    """Pairs found by `method`: within X (i < j) without Y, else (i in X, j in Y). With `queries`,
    only those rows of X are searched (against all of X), and pairs are (query row, other row)."""
    cut = threshold - TOLERANCE
    base = X if Y is None else Y
    Q = X if queries is None else X[queries]
    qid = np.arange(len(X)) if queries is None else queries
    self_join = Y is None
    if method in ("exact", "loop-ivf"):
        t0 = time.perf_counter()
        how = "exact" if method == "exact" else "ann"
        if queries is None:
            got = {(i, j) for i, j, _ in near_pairs(X, threshold, Y, method=how, probes=probes, seed=seed)}
        else:  # the reference for a sample: exact, each sampled row against all rows
            found = near_pairs(Q, threshold, base, method="exact")
            got = {(min(int(qid[a]), b), max(int(qid[a]), b)) for a, b, _ in found if qid[a] != b}
        return got, 0.0, time.perf_counter() - t0
    t0 = time.perf_counter()
    if method == "faiss-ivf" or method == "faiss-hnsw":
        import faiss

        if method == "faiss-ivf":
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(base.shape[1]), base.shape[1], _cells(len(base), probes),
                                       faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            rng = np.random.default_rng(seed)
            index.train(base[np.sort(rng.choice(len(base), min(len(base), 32 * index.nlist), replace=False))])
            index.nprobe = probes
        else:
            index = faiss.IndexHNSWFlat(base.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        index.add(base)
        if method == "faiss-hnsw":
            index.hnsw.efSearch = 128
        t1 = time.perf_counter()
        # faiss 1.15.1's IndexHNSWFlat.range_search aborts (RangeSearchResult::do_allocation) on
        # batches of 1000 queries; batches of 10 work.
        step = 10 if method == "faiss-hnsw" else len(Q)
        got = set()
        for r in range(0, len(Q), step):
            lims, _, ids = index.range_search(Q[r:r + step], cut)
            got |= {p for a in range(len(lims) - 1) for p in _within(int(qid[r + a]), ids[lims[a]:lims[a + 1]],
                                                                     self_join)}
        return got, t1 - t0, time.perf_counter() - t1
    if method.startswith("hnswlib-"):
        import hnswlib

        k = int(method.split("-", 1)[1])
        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(max_elements=len(base), ef_construction=100, M=16, random_seed=seed)
        index.add_items(base, np.arange(len(base)))
        index.set_ef(max(2 * k, 64))
        t1 = time.perf_counter()
        labels, dist = index.knn_query(Q, k=min(k, len(base)))
        got = {p for a in range(len(Q))
               for p in _within(int(qid[a]), labels[a][1.0 - dist[a] >= cut], self_join)}
        return got, t1 - t0, time.perf_counter() - t1
    raise SystemExit(f"unknown method {method!r}")


def _row(method: str, want: Pairs, got: Pairs, build: float, query: float, cpu: float, **extra) -> dict:
    out = {"method": method, "pairs_exact": len(want), "pairs_found": len(got & want),
           "recall": round(len(got & want) / len(want), 4) if want else None, "false_pairs": len(got - want),
           "build_s": round(build, 2), "query_s": round(query, 2), "cpu_s": round(cpu, 1), **extra}
    print(f"    {method:>12}: recall {out['recall']}  build {out['build_s']} s  query {out['query_s']} s  "
          f"cpu {out['cpu_s']} s", file=sys.stderr, flush=True)
    return out


# -- parts ----------------------------------------------------------------------------------
def bench_banking77(data: Path, cache_path: Path | None, threshold: float, methods: list[str], probes: int,
                    seed: int) -> dict:
    from loop.core.embeddings import Embedder, embed_texts
    from loop.curation.validate import read_records
    from loop.services.vectors import EmbeddingCache

    train, test = read_records(data / "train.jsonl"), read_records(data / "test.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(cache_path or Path(tmp) / "embeddings.sqlite")
        embedder = Embedder()
        t0 = time.perf_counter()
        X, _ = embed_texts([it.text for it in train], cache, embedder)
        T, _ = embed_texts([it.text for it in test], cache, embedder)
        embed_s = time.perf_counter() - t0
    A = np.concatenate([X, T])
    out: dict = {"part": "banking77", "n_train": len(X), "n_test": len(T), "threshold": threshold, "probes": probes,
                 "embed_s": round(embed_s, 1)}
    for name, args in (("within train+test", (A, None)), ("leakage train x test", (X, T))):
        print(f"  banking77 {name}", file=sys.stderr, flush=True)
        want, _, exact_s, exact_cpu = timed("exact", args[0], threshold, args[1], None, probes, seed)
        rows = [_row(m, want, *timed(m, args[0], threshold, args[1], None, probes, seed))
                for m in methods if m != "exact"]
        out[name] = {"exact_s": round(exact_s, 2), "exact_cpu_s": round(exact_cpu, 1), "pairs": len(want),
                     "methods": rows}
    return out


def bench_synthetic(n: int, clusters: int, n_queries: int, threshold: float, methods: list[str], probes: int,
                    seed: int) -> dict:
    t0 = time.perf_counter()
    X, special = planted(n, clusters, seed)
    gen_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 2)
    half = n_queries // 2
    queries = np.unique(np.concatenate([rng.choice(special, min(half, len(special)), replace=False),
                                        rng.choice(n, n_queries - half, replace=False)]))
    print(f"  synthetic {n:,} x {X.shape[1]} ({gen_s:.0f} s to generate): exact reference for "
          f"{len(queries):,} rows", file=sys.stderr, flush=True)
    want, _, exact_s, exact_cpu = timed("exact", X, threshold, None, queries, probes, seed)
    qset = set(queries.tolist())
    rows = []
    for m in methods:
        if m == "exact":
            continue
        if m == "loop-ivf":
            got, build, query, cpu = timed(m, X, threshold, None, None, probes, seed)
            rows.append(_row(m, want, {p for p in got if p[0] in qset or p[1] in qset}, build, query, cpu,
                             total_s=round(build + query, 1), pairs_all_rows=len(got)))
        else:
            got, build, query, cpu = timed(m, X, threshold, None, queries, probes, seed)
            est = query * n / len(queries)
            rows.append(_row(m, want, got, build, query, cpu, query_s_all_est=round(est),
                             total_s=round(build + est, 1)))
    return {"part": "synthetic", "n": n, "dim": X.shape[1], "clusters": clusters, "threshold": threshold,
            "probes": probes, "planted_rows": len(special), "queries": len(queries), "pairs_in_sample": len(want),
            "exact_sample_s": round(exact_s, 1), "exact_sample_cpu_s": round(exact_cpu, 1),
            "exact_all_est_s": round(exact_s * (n - 1) / 2 / len(queries)),
            "methods": rows}


def bench_cutover(sizes: list[int], clusters: int, threshold: float, probes: int, seed: int) -> dict:
    rows = []
    for n in sizes:
        X, _ = planted(n, clusters, seed)
        near_pairs(X[:2000], threshold, method="exact")  # warm-up
        times = {}
        for how in ("exact", "ann"):
            t0, cpu = time.perf_counter(), time.process_time()
            found = near_pairs(X, threshold, method=how, probes=probes, seed=seed)
            times[how] = round(time.perf_counter() - t0, 2)
            times[f"{how}_cpu"] = round(time.process_time() - cpu, 2)
            times[f"{how}_pairs"] = len(found)
        rows.append({"n": n, **times})
        print(f"  cutover {n:,}: exact {times['exact']} s (cpu {times['exact_cpu']}), index {times['ann']} s "
              f"(cpu {times['ann_cpu']})", file=sys.stderr, flush=True)
    return {"part": "cutover", "threshold": threshold, "probes": probes, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ann", description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["banking77", "synthetic", "cutover"], required=True)
    ap.add_argument("--methods", default="loop-ivf,faiss-ivf,faiss-hnsw,hnswlib-10,hnswlib-30",
                    help="comma-separated (see the module docstring)")
    ap.add_argument("--threshold", type=float, default=0.95, help="cosine threshold (default 0.95, the validator's)")
    ap.add_argument("--probes", type=int, default=PROBES, help=f"cells per query (default {PROBES})")
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic: rows (default 1000000)")
    ap.add_argument("--clusters", type=int, default=200, help="synthetic: Gaussian clusters (default 200)")
    ap.add_argument("--queries", type=int, default=1000, help="synthetic: sampled rows for the exact reference")
    ap.add_argument("--sizes", default="5000,10000,20000,40000", help="cutover: comma-separated row counts")
    ap.add_argument("--data", type=Path, default=DATA, help="banking77: folder with train.jsonl and test.jsonl")
    ap.add_argument("--cache", type=Path, help="banking77: an EmbeddingCache file to reuse (default: fresh)")
    ap.add_argument("--blas-threads", type=int, metavar="N", help="cap BLAS/OpenMP threads (threadpoolctl)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.part == "banking77" and not (args.data / "train.jsonl").is_file():
        ap.error(f"{args.data}: no train.jsonl; pass --data")
    load_before = os.getloadavg()
    with _threads(args.blas_threads):
        if args.part == "banking77":
            result = bench_banking77(args.data, args.cache, args.threshold, methods, args.probes, args.seed)
        elif args.part == "synthetic":
            result = bench_synthetic(args.n, args.clusters, args.queries, args.threshold, methods, args.probes,
                                     args.seed)
        else:
            sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
            result = bench_cutover(sizes, args.clusters, args.threshold, args.probes, args.seed)
    m = {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
         "blas_threads": args.blas_threads or "default"}
    print(json.dumps({"result": result, "machine": m}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
