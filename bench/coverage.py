"""Benchmark of `loop coverage` (issue 17): what it finds on banking77, and what it costs at 100k items.

Vectors are all-MiniLM-L6-v2 embeddings of banking77 (../shared/data/banking77, or `--data`) through an
EmbeddingCache (`--cache PATH` reuses one; the default is a fresh one in a temp dir, so the first run
embeds 13,083 texts: minutes on 2 cores). Three parts, each through `loop.workflows.coverage.build`
(what `loop coverage` runs once the vectors are there: clustering, the per-cluster table and flags,
top terms, representatives, the MMD shift test, error clustering) and `plot_map`:

1. real      train as the pool, every row labelled; test as production; a model trained on train
             scored on test (its mistakes clustered). What `loop coverage train.jsonl --production
             test.jsonl` reports.
2. planted   train as the pool with the labels of `--hide` intents removed (seeded choice) and a
             `--label-rate` share of the other rows labelled (the rest unlabelled); test as production.
             The hidden intents are the planted gap: are the clusters they fill the first flagged?
             `--map PATH` draws this part's map (the README's picture).
3. scale     the planted set at `--n` pool rows (100k): train repeated with Gaussian noise (sigma
             `--noise` per dimension, renormalised: cosine about 0.98 to the source row) and the texts
             repeated; production is test repeated the same way to `--production` rows. Times the
             clustering, the report (incl. the shift test), the shift test alone and the map.

    python -m bench.coverage --cache .loop/embeddings.sqlite                 # all parts, JSON on stdout
    python -m bench.coverage --cache .loop/embeddings.sqlite --part scale --n 100000 --production 30000
    python -m bench.coverage --cache .loop/embeddings.sqlite --part planted --map docs/coverage_map.png
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.next_round import machine
from loop.core.coverage import cluster_embeddings, two_sample_test
from loop.core.dataset import Item
from loop.core.embeddings import Embedder, embed_texts
from loop.core.model import train
from loop.curation.validate import read_records
from loop.services.vectors import EmbeddingCache
from loop.workflows.coverage import build, plot_map

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "banking77"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(data: Path, cache_path: Path | None) -> dict:
    tr, te = read_records(data / "train.jsonl"), read_records(data / "test.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(cache_path or Path(tmp) / "embeddings.sqlite")
        start = time.perf_counter()
        embedder = Embedder()
        X, new_train = embed_texts([it.text for it in tr], cache, embedder)
        T, new_test = embed_texts([it.text for it in te], cache, embedder)
        seconds = time.perf_counter() - start
    return {"train": tr, "test": te, "X": X, "T": T, "embedding": {"seconds": round(seconds, 1),
                                                                  "newly_embedded": new_train + new_test}}


def _evaluation(X: np.ndarray, labels: list, T: np.ndarray, test: list[Item], seed: int) -> dict:
    rows = [i for i, lab in enumerate(labels) if lab is not None]
    clf = train(X[rows], [labels[i] for i in rows], seed=seed)
    return {"X": T, "y_true": [it.label for it in test], "y_pred": [str(v) for v in clf.predict(T)],
            "texts": [it.text for it in test]}


def _findings(report: dict, shown: int = 5) -> dict:
    rows = {c["cluster"]: c for c in report["clusters"]}
    name = lambda c: ", ".join(rows[c]["terms"][:3])  # noqa: E731
    errors = report["errors"]
    return {
        "k": report["k"], "clusters_labelled": report["clusters_labelled"], "summary": report["summary_line"],
        "under_covered": [{"cluster": f["cluster"], "terms": name(f["cluster"]),
                           "traffic": round(f["traffic_share"], 4), "labelled": round(f["labelled_share"], 4)}
                          for f in report["flags"]["under_covered"][:shown]],
        "n_under_covered": len(report["flags"]["under_covered"]),
        "shift": {k: report["shift"]["test"][k] for k in ("p_value", "shift", "mmd2", "mmd2_null", "sample_a",
                                                          "sample_b")}
        | {"total_variation": round(report["shift"]["total_variation"], 4),
           "production_heavier": [{"terms": name(c["cluster"]), "share_b": round(c["share_b"], 4),
                                   "share_a": round(c["share_a"], 4)} for c in report["shift"]["clusters"][:3]]},
        "errors": None if errors is None else {
            "errors": errors["errors"], "items": errors["n_items"], "accuracy": round(errors["accuracy"], 4),
            "worst_clusters": [{"terms": name(e["cluster"]), "errors": e["errors"], "items": e["items"],
                                "top_pair": next(iter(e["pairs"]))} for e in errors["by_cluster"][:shown]],
            "worst_pairs": [{"pair": f"{e['label']} -> {e['predicted']}", "errors": e["errors"]}
                            for e in errors["by_pair"][:shown]]},
        "timings": {k: round(v, 2) for k, v in report["timings"].items()}}


def planted_labels(train_items: list[Item], hide: int, rate: float, seed: int) -> tuple[list, set[str]]:
    rng = np.random.default_rng(seed)
    intents = sorted({it.label for it in train_items})
    hidden = set(rng.choice(intents, hide, replace=False).tolist())
    labels = [None if it.label in hidden or rng.random() >= rate else it.label for it in train_items]
    return labels, hidden


def _gap_check(report: dict, cluster_labels: np.ndarray, true_labels: list, hidden: set[str]) -> dict:
    """How much of the flagged clusters the hidden intents fill, against their share of the whole pool, and
    how much of the hidden intents' rows the flagged clusters hold. Intents share clusters (k is below the
    number of intents), so a hidden intent usually dilutes a cluster rather than owning one."""
    truth = np.array([lab in hidden for lab in true_labels])
    flagged = [f["cluster"] for f in report["flags"]["under_covered"]]
    per = [{"cluster": c, "hidden_share": round(float(truth[cluster_labels == c].mean()), 3)} for c in flagged]
    inside = np.isin(cluster_labels, flagged)
    return {"hidden_intents": sorted(hidden), "hidden_share_of_pool": round(float(truth.mean()), 4),
            "flagged": per, "first_flag_hidden_share": per[0]["hidden_share"] if per else None,
            "hidden_rows_in_flagged_clusters": round(float(truth[inside].sum() / max(truth.sum(), 1)), 3)}


def run_part(name: str, X, texts, labels, T, test, *, seed: int, evaluate: bool, plot: Path | None,
             true_labels=None, hidden=None) -> dict:
    evaluation = _evaluation(X, labels, T, test, seed) if evaluate else None
    start = time.perf_counter()
    clustering = cluster_embeddings(np.concatenate([X, T]), seed=seed)
    clustering_s = time.perf_counter() - start
    start = time.perf_counter()
    report = build(X, texts, labels, production=(test, T), evaluation=evaluation, seed=seed, clustering=clustering)
    report["timings"]["clustering_s"] = clustering_s
    out = {"part": name, "pool": len(X), "production": len(T), "labelled": sum(lab is not None for lab in labels),
           "build_seconds": round(clustering_s + time.perf_counter() - start, 1), **_findings(report)}
    start = time.perf_counter()
    two_sample_test(X[[i for i, lab in enumerate(labels) if lab is not None]], T, seed=seed)
    out["shift_test_seconds"] = round(time.perf_counter() - start, 2)
    if plot is not None:
        start = time.perf_counter()
        plot_map(report, plot)
        out["map_seconds"] = round(time.perf_counter() - start, 2)
        out["map"] = str(plot)
    if hidden is not None:
        out["gap"] = _gap_check(report, clustering.labels[:len(X)], true_labels, hidden)
    out["max_rss_mb"] = round(_rss_mb())
    return out


def repeat(X: np.ndarray, items: list[Item], n: int, noise: float, seed: int) -> tuple[np.ndarray, list[Item]]:
    rng = np.random.default_rng(seed)
    idx = np.arange(n) % len(X)
    Y = X[idx] + rng.normal(scale=noise, size=(n, X.shape[1])).astype(np.float32)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return Y.astype(np.float32), [items[i] for i in idx]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["real", "planted", "scale", "all"], default="all")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, help="an EmbeddingCache file to reuse (default: fresh, cold)")
    ap.add_argument("--n", type=int, default=100_000, help="scale: pool rows (default 100000)")
    ap.add_argument("--production", type=int, default=30_000, help="scale: production rows (default 30000)")
    ap.add_argument("--noise", type=float, default=0.01, help="scale: Gaussian noise per dimension (default 0.01)")
    ap.add_argument("--hide", type=int, default=5, help="planted/scale: intents whose labels are removed (default 5)")
    ap.add_argument("--label-rate", type=float, default=0.2, help="planted/scale: share of other rows labelled")
    ap.add_argument("--map", type=Path, help="planted: write its map here (PNG)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not (args.data / "train.jsonl").is_file():
        ap.error(f"{args.data}: no train.jsonl; pass --data")
    load_before = os.getloadavg()
    d = load(args.data, args.cache)
    print(f"  vectors: {d['embedding']}", file=sys.stderr, flush=True)
    tr, te, X, T = d["train"], d["test"], d["X"], d["T"]
    truth = [it.label for it in tr]
    results = [{"part": "embedding", **d["embedding"]}]
    if args.part in ("real", "all"):
        results.append(run_part("real", X, [it.text for it in tr], truth, T, te, seed=args.seed, evaluate=True,
                                plot=None))
        print(f"  real: {results[-1]['build_seconds']} s", file=sys.stderr, flush=True)
    labels, hidden = planted_labels(tr, args.hide, args.label_rate, args.seed)
    if args.part in ("planted", "all"):
        results.append(run_part("planted", X, [it.text for it in tr], labels, T, te, seed=args.seed, evaluate=True,
                                plot=args.map, true_labels=truth, hidden=hidden))
        print(f"  planted: {results[-1]['build_seconds']} s", file=sys.stderr, flush=True)
    if args.part in ("scale", "all"):
        Xn, items = repeat(X, tr, args.n, args.noise, args.seed)
        Tn, prod = repeat(T, te, args.production, args.noise, args.seed + 1)
        lab_n = [labels[i % len(tr)] for i in range(args.n)]
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_part("scale", Xn, [it.text for it in items], lab_n, Tn, prod, seed=args.seed,
                                    evaluate=True, plot=Path(tmp) / "map.png",
                                    true_labels=[it.label for it in items], hidden=hidden))
        print(f"  scale: {results[-1]['build_seconds']} s", file=sys.stderr, flush=True)
    m = {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    print(json.dumps({"results": results, "machine": m,
                      "planted": {"hidden": sorted(hidden), "label_rate": args.label_rate}}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
