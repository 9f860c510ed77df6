"""Benchmark of the Ray engine (`loop.services.ray_engine`): embedding items/s on a local Ray
cluster with 1 and 2 worker processes (model actors) against the local engine, and pool scoring
(`predict_proba`) on Ray against in-process.

The texts are the first `--items` of `--data` (default ../shared/data/banking77/train.jsonl;
examples/support_tickets.jsonl, 400 items, when that is absent, which the output says). Each
cluster is started as the integration test starts it (`tests/integration/test_ray.py`,
`local_cluster`: `ray start --head` plus `ray start --address` nodes, one CPU each, token
authentication, no dashboard, no usage stats) and stopped by the process groups it started.

1. local     `Embedder().encode(texts)` in this process, the model loaded first (timed apart):
             what `loop init` does without Ray (PyTorch with its default threads: every core);
             then again with one thread, as one actor runs.
2. ray N     `RayEmbedder.encode(texts)` on a cluster of N one-CPU nodes (N actors): one Ray
             Data job, which starts its actors, each loading the model once. Timed twice: a job
             of one block (`--block` texts: the fixed cost, actors started and model loaded) and
             the job of all the texts; items/s of the whole job, and of the texts beyond the
             fixed cost ((items - block) / (t_all - t_one)). The vectors are checked against
             the local ones (max absolute difference).
3. scoring   `predict_proba` of a logistic regression (77 classes, fitted on 2,000 random
             rows) over `--pool` random rows of 384 floats: in-process, and `RayScored` on the
             2-node cluster (blocks of rows in Ray tasks, the classifier shipped once); the
             largest difference of the probabilities, and whether the default strategy picks
             the same 50 items with either (random rows: near-ties everywhere); with
             `--scoring-only`, also from banking77's 10,003 real vectors when `--cache` holds
             them all (500 random labelled, 50 picked from the other 9,503).

    nice -n 10 python -m bench.ray_embedding                          # ~5 min on 2 cores
    nice -n 10 python -m bench.ray_embedding --items 1000 --out docs/bench/ray-embedding.json
    nice -n 10 python -m bench.ray_embedding --scoring-only --out docs/bench/ray-embedding.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from pathlib import Path

import numpy as np

from tests.helpers import REPO, SHARED_DATA


def read_texts(path: Path, n: int) -> list[str]:
    texts = []
    with path.open() as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--block", type=int, default=64, help="texts per block (and in the fixed-cost job)")
    ap.add_argument("--workers", default="1,2", help="cluster sizes to run (one-CPU nodes)")
    ap.add_argument("--pool", type=int, default=200_000, help="rows scored in the scoring part (0: skip it)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--scoring-only", action="store_true", help="only the scoring part; merged into --out")
    ap.add_argument("--cache", type=Path, default=REPO / ".loop" / "embeddings.sqlite",
                    help="embedding cache holding banking77's vectors (the real-data selection check)")
    args = ap.parse_args()
    if args.scoring_only:
        from dataclasses import replace

        from loop.services import ray_engine
        from loop.services.settings import Settings
        from tests.integration.test_ray import driver_env, local_cluster

        report = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
        with local_cluster(nodes=2) as (address, env), driver_env(env):
            settings = replace(Settings(), ray_address=address)
            report["scoring"] = scoring(settings, ray_engine, args.pool)
            real = banking77_vectors(args.cache)
            if real is not None:
                report["selection_banking77"] = real_selection(settings, ray_engine, *real)
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return
    data = args.data or SHARED_DATA / "banking77" / "train.jsonl"
    if not data.exists():
        data = REPO / "examples" / "support_tickets.jsonl"
        print(f"{data} (the shared banking77 is absent)")
    texts = read_texts(data, args.items)
    n = len(texts)
    report: dict = {"data": str(data), "items": n, "block": args.block, "cpus": os.cpu_count(),
                    "load_before": os.getloadavg()[0]}

    from loop.core.embeddings import Embedder

    local = Embedder()
    t = time.perf_counter()
    local.encode(["warm up"])
    report["local_model_load_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    X_local = local.encode(texts)
    secs = time.perf_counter() - t
    report["local"] = {"seconds": round(secs, 2), "items_per_s": round(n / secs, 1)}
    print(f"local: {n} items in {secs:.1f} s = {n / secs:.1f} items/s (model load {report['local_model_load_s']} s)")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as one Ray actor runs (Ray sets OMP_NUM_THREADS=1 for a one-CPU actor)
    t = time.perf_counter()
    local.encode(texts)
    secs = time.perf_counter() - t
    torch.set_num_threads(threads)
    report["local_1_thread"] = {"seconds": round(secs, 2), "items_per_s": round(n / secs, 1)}
    print(f"local, 1 thread: {n} items in {secs:.1f} s = {n / secs:.1f} items/s")

    from dataclasses import replace

    from loop.services.settings import Settings
    from tests.integration.test_ray import driver_env, local_cluster

    sizes = [int(w) for w in args.workers.split(",")]
    token = secrets.token_hex(32)  # one for every cluster: this process keeps the first token it reads
    for workers in sizes:
        with local_cluster(nodes=workers, token=token) as (address, env), driver_env(env):
            from loop.services import ray_engine

            settings = replace(Settings(), ray_address=address)
            engine = ray_engine.RayEmbedder(settings, Embedder(), block_texts=args.block)
            assert engine.actors == workers, (engine.actors, workers)
            t = time.perf_counter()
            engine.encode(texts[:args.block])
            one = time.perf_counter() - t
            t = time.perf_counter()
            X_ray = engine.encode(texts)
            whole = time.perf_counter() - t
            diff = float(np.abs(X_ray - X_local).max())
            row = {"workers": workers, "fixed_cost_s": round(one, 2), "seconds": round(whole, 2),
                   "items_per_s": round(n / whole, 1),
                   "items_per_s_beyond_fixed_cost": round((n - args.block) / max(whole - one, 1e-9), 1),
                   "max_abs_diff_vs_local": diff}
            report[f"ray_{workers}"] = row
            print(f"ray, {workers} worker(s): {n} items in {whole:.1f} s = {row['items_per_s']} items/s; one block "
                  f"(actors started, model loaded) {one:.1f} s; beyond it {row['items_per_s_beyond_fixed_cost']} "
                  f"items/s; max |diff| vs local {diff:.2e}")
            if args.pool and workers == max(sizes):
                report["scoring"] = scoring(settings, ray_engine, args.pool)

    report["load_after"] = os.getloadavg()[0]
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def banking77_vectors(cache_path: Path):
    """banking77 train's vectors and labels when `cache_path` holds every one (else None: skipped)."""
    from loop.core.embeddings import MODEL_ID, cached_matrix
    from loop.services.vectors import EmbeddingCache

    data = SHARED_DATA / "banking77" / "train.jsonl"
    if not data.exists() or not cache_path.exists():
        return None
    rows = [json.loads(line) for line in data.open()]
    X = cached_matrix([r["text"] for r in rows], EmbeddingCache(cache_path), MODEL_ID)
    return None if X is None else (X, np.array([r["label"] for r in rows]))


def real_selection(settings, ray_engine, X: np.ndarray, y: np.ndarray, labelled: int = 500, n: int = 50) -> dict:
    """The default strategy's picks from banking77's pool (all but `labelled` random labelled
    items) with the classifier in-process, on Ray, and in-process with one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from loop.core import model as model_lib
    from loop.core.learning import choose_batch
    from loop.core.strategies import DEFAULT_STRATEGY

    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, pool = order[:labelled], order[labelled:]
    clf = model_lib.train(X[train], y[train], seed=0)
    picks = {"local": choose_batch(X[train], y[train], X[pool], n, DEFAULT_STRATEGY, seed=1, classifier=clf).picked,
             "ray": choose_batch(X[train], y[train], X[pool], n, DEFAULT_STRATEGY, seed=1,
                                 classifier=ray_engine.RayScored(clf, settings)).picked}
    with threadpool_limits(limits=1, user_api="blas"):
        picks["local_1_thread"] = choose_batch(X[train], y[train], X[pool], n, DEFAULT_STRATEGY, seed=1,
                                               classifier=clf).picked
    out = {"pool": len(pool), "labelled": labelled, "picks": n}
    for other in ("ray", "local_1_thread"):
        out[f"{other}_same_as_local"] = bool(np.array_equal(picks["local"], picks[other]))
        out[f"{other}_shared_picks_with_local"] = len(set(picks["local"]) & set(picks[other]))
    print(f"banking77, {len(pool)} items in the pool, {labelled} labelled: {DEFAULT_STRATEGY}'s {n} picks {out}")
    return out


def scoring(settings, ray_engine, pool: int) -> dict:
    from threadpoolctl import threadpool_limits

    from loop.core import model as model_lib
    from loop.core.learning import choose_batch
    from loop.core.strategies import DEFAULT_STRATEGY

    rng = np.random.default_rng(0)
    X_train = rng.normal(size=(2000, 384)).astype(np.float32)
    y = rng.integers(0, 77, 2000).astype(str)
    clf = model_lib.train(X_train, y, seed=0)
    X = rng.normal(size=(pool, 384)).astype(np.float32)
    t = time.perf_counter()
    p_local = clf.predict_proba(X)
    local_s = time.perf_counter() - t
    scored = ray_engine.RayScored(clf, settings)
    scored.predict_proba(X[:1000])  # the tasks' workers started once
    t = time.perf_counter()
    p_ray = scored.predict_proba(X)
    ray_s = time.perf_counter() - t
    diff = float(np.abs(p_local - p_ray).max())
    picks = {"local": choose_batch(X_train, y, X, 50, DEFAULT_STRATEGY, seed=1, classifier=clf).picked,
             "ray": choose_batch(X_train, y, X, 50, DEFAULT_STRATEGY, seed=1, classifier=scored).picked}
    with threadpool_limits(limits=1, user_api="blas"):  # the local engine itself, with one BLAS thread
        p_one = clf.predict_proba(X)
        picks["local_1_thread"] = choose_batch(X_train, y, X, 50, DEFAULT_STRATEGY, seed=1, classifier=clf).picked
    out = {"rows": pool, "local_s": round(local_s, 3), "ray_s": round(ray_s, 3), "max_abs_diff": diff,
           "max_abs_diff_local_1_vs_default_threads": float(np.abs(p_local - p_one).max())}
    for other in ("ray", "local_1_thread"):
        out[f"{other}_same_50_as_local"] = bool(np.array_equal(picks["local"], picks[other]))
        out[f"{other}_shared_picks_with_local"] = len(set(picks["local"]) & set(picks[other]))
    agree = {k: v for k, v in out.items() if k.startswith(("ray_same", "ray_shared", "local_1_thread_s"))}
    print(f"scoring {pool} rows: in-process {local_s:.2f} s ({pool / local_s:,.0f} rows/s), on Ray "
          f"{ray_s:.2f} s ({pool / ray_s:,.0f} rows/s); max |diff| of probabilities {diff:.1e}; "
          f"{DEFAULT_STRATEGY}'s 50 picks: {json.dumps(agree)}")
    return out


if __name__ == "__main__":
    main()
