"""Benchmark of `loop validate`: the near-duplicate search at 100k items, and the whole validator on
banking77 train+test with real embeddings.

1. near_pairs  `loop.core.neighbours.near_pairs(X, threshold)` on SYNTHETIC unit vectors of dimension
   384 (`bench.next_round.synthetic`: a clustered mixture calibrated to all-MiniLM-L6-v2's cosine
   spread) with `--planted` near-duplicate pairs added (a row plus small noise, cosine about
   0.97). Times the search and measures its peak memory with tracemalloc (numpy reports its
   buffers to it), besides the input matrix; checks every planted pair was found (exact search: it
   must be). The cost depends on the shapes, not on what the vectors mean.
2. validator   `loop.curation.validate.validate` on banking77 (../shared/data/banking77, or `--data`):
   train as the items, test as `--test`, the test label counts as the reference distribution.
   Embedding (`loop.core.embeddings.embed_texts` into an EmbeddingCache) is timed apart from the
   checks: embedding is a one-off per text (the cache keeps it; `loop validate` reuses the
   workspace cache), the checks run every time. `--cache PATH` reuses a cache from an earlier
   run; the default is a fresh one in a temp dir, so the embedding time is the cold cost.

    python -m bench.validate                              # both parts, JSON on stdout
    python -m bench.validate --part near --n 100000 --blas-threads 1
    python -m bench.validate --part near --n 100000 --method ann   # the index (bench/ann.py: recall)
    python -m bench.validate --part validator --cache .loop/bench-embeddings.sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.next_round import SHARED, SPREAD, _threads, machine, synthetic
from loop.core.embeddings import DIM
from loop.core.neighbours import BLOCK, METHODS, near_pairs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "banking77"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


@contextmanager
def _traced():
    """Peak bytes allocated inside the block (tracemalloc), in the yielded dict."""
    out: dict = {}
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield out
    finally:
        out["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()


def planted_matrix(n: int, planted: int, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """n synthetic unit rows; the last `planted` rows are noisy copies of random earlier rows."""
    _, _, X = synthetic(n, 20, 20, spread=SPREAD, shared=SHARED, seed=seed)
    rng = np.random.default_rng(seed + 1)
    sources = rng.choice(n - planted, size=planted, replace=False)
    copies = X[sources] + rng.standard_normal((planted, X.shape[1])).astype(X.dtype) * (0.25 / np.sqrt(X.shape[1]))
    X[n - planted:] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return X, {(int(s), n - planted + k) for k, s in enumerate(sources)}


def bench_near(n: int, threshold: float, planted: int, block: int, seed: int, method: str = "exact") -> dict:
    X, want = planted_matrix(n, planted, seed)
    near_pairs(X[:2000], threshold, block=block, method="exact")  # warm-up: BLAS threads, page faults
    rss_before = _rss_mb()
    with _traced() as mem:
        t0 = time.perf_counter()
        pairs = near_pairs(X, threshold, block=block, method=method)
        seconds = time.perf_counter() - t0
    found = {(i, j) for i, j, _ in pairs}
    return {"part": "near_pairs", "method": method, "n": n, "dim": X.shape[1], "threshold": threshold, "block": block,
            "seconds": round(seconds, 2), "pairs": len(pairs), "planted": planted,
            "planted_found": len(want & found), "input_mb": round(X.nbytes / 2**20, 1),
            "peak_traced_mb": round(mem["peak_mb"], 1), "max_rss_mb_before": round(rss_before),
            "max_rss_mb_after": round(_rss_mb())}


def bench_validator(data: Path, cache_path: Path | None, threshold: float, seed: int) -> dict:
    from loop.core.embeddings import Embedder, embed_texts
    from loop.curation.validate import read_records, validate
    from loop.services.vectors import EmbeddingCache

    train, test = read_records(data / "train.jsonl"), read_records(data / "test.jsonl")
    reference = json.loads((data / "label_distribution.json").read_text(encoding="utf-8"))["test"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(cache_path or Path(tmp) / "embeddings.sqlite")
        embedder = Embedder()
        t0 = time.perf_counter()
        embedder.encode(["warm up"])  # loading the model is timed on its own
        t1 = time.perf_counter()
        X, new_train = embed_texts([it.text for it in train], cache, embedder)
        T, new_test = embed_texts([it.text for it in test], cache, embedder)
        t2 = time.perf_counter()
    stages: dict[str, float] = {}
    last = [None, time.perf_counter()]

    def progress(name: str) -> None:
        now = time.perf_counter()
        if last[0]:
            stages[last[0]] = round(now - last[1], 2)
        last[:] = [name, now]

    labels = sorted({it.label for it in train if it.label})
    t3 = time.perf_counter()
    report = validate(train, embeddings=X, labels=labels, test=test, test_embeddings=T, reference=reference,
                      near_threshold=threshold, seed=seed, progress=progress)
    t4 = time.perf_counter()
    stages[last[0]] = round(t4 - last[1], 2)
    checks = report["checks"]
    return {"part": "validator", "data": str(data), "n_train": len(train), "n_test": len(test),
            "model_load_s": round(t1 - t0, 1), "embed_s": round(t2 - t1, 1), "newly_embedded": new_train + new_test,
            "cache": str(cache_path) if cache_path else "fresh (temp dir)",
            "checks_s": round(t4 - t3, 2), "stage_s": stages, "near_threshold": threshold,
            "found": {name: c["count"] for name, c in checks.items()},
            "status": {name: c["status"] for name, c in checks.items()},
            "near_different_labels": checks["near_duplicates"].get("different_labels"),
            "leakage": {k: checks["leakage"].get(k) for k in ("exact_groups", "near_pairs", "conflicting")},
            "reference": {k: checks["class_balance"]["reference"][k]
                          for k in ("chi_square", "p_value", "kl_divergence")},
            "max_rss_mb": round(_rss_mb())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.validate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["near", "validator", "both"], default="both")
    ap.add_argument("--n", type=int, default=100_000, help="near: number of synthetic rows (default 100000)")
    ap.add_argument("--planted", type=int, default=1000, help="near: planted near-duplicate pairs (default 1000)")
    ap.add_argument("--threshold", type=float, default=0.95, help="cosine threshold (default 0.95)")
    ap.add_argument("--block", type=int, default=BLOCK, help=f"near: tile size (default {BLOCK})")
    ap.add_argument("--method", choices=METHODS, default="exact",
                    help="near: near_pairs' method (default exact; the validator itself uses auto)")
    ap.add_argument("--data", type=Path, default=DATA, help="validator: a folder with train.jsonl, test.jsonl, "
                    "label_distribution.json (default ../shared/data/banking77)")
    ap.add_argument("--cache", type=Path, help="validator: an EmbeddingCache file to reuse (default: fresh, cold)")
    ap.add_argument("--blas-threads", type=int, metavar="N", help="cap BLAS/OpenMP threads (threadpoolctl)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.n < 2 or not 0 <= args.planted < args.n:
        ap.error("--n must be at least 2 and --planted between 0 and n - 1")
    if args.part != "near" and not (args.data / "train.jsonl").is_file():
        ap.error(f"{args.data}: no train.jsonl; pass --data or --part near")
    load_before = os.getloadavg()
    results = []
    with _threads(args.blas_threads):
        if args.part in ("near", "both"):
            results.append(bench_near(args.n, args.threshold, args.planted, args.block, args.seed, args.method))
            print(f"  near_pairs {args.n:,} x {DIM}: {results[-1]['seconds']} s", file=sys.stderr, flush=True)
        if args.part in ("validator", "both"):
            results.append(bench_validator(args.data, args.cache, args.threshold, args.seed))
    m = {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
         "blas_threads": args.blas_threads or "default"}
    print(json.dumps({"results": results, "machine": m}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
