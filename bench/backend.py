"""Benchmark of the ML backend and the trainer on the real stack (Redis, Label Studio, ML backend, trainer).

Everything runs against the services `loop.services.stack.up` starts, in a throwaway workspace on free
ports, and `loop.services.stack.down` stops them at the end (also on failure or Ctrl-C):

1. predict   `/predict` latency for 1 and 100 tasks whose texts are in the embedding cache, with a
             current model in Redis (httpx, one keep-alive connection).
2. retrain   Annotation event to new model version with 1k and 10k labels: one valid webhook
             POSTed to the running backend, timed until `store.current_model_version` changes.
             Plus the trainer's refit alone (`Trainer.retrain` in this process) and a full refit
             against a warm start (`LogisticRegression(warm_start=True)`, sklearn directly).
3. intake    Valid webhooks per second to `/webhook`, sequential and from 4 threads.
4. submit    An annotator's submit (`annotations.create` with the annotator's own token) on a
             project with the ML backend and its webhook connected, one whose webhook goes to a
             local receiver that answers at once (Label Studio's own cost of a webhook), and one
             without either; paced like a person, and back to back.
5. push      `loop.workflows.predictions.push` of 3,000 tasks, and the predictions counted back through the API.

Sections 1-3 use projects written straight into Redis (no Label Studio project behind them) whose
items have SYNTHETIC embeddings: unit-normalised float32 vectors of dimension 384 from the seeded
cluster mixture of `bench.next_round.synthetic` (calibrated to be as hard to fit as all-MiniLM-L6-v2
embeddings of the demo tickets), stored in the workspace's embedding cache under the items' keys.
Sections 4-5 use real Label Studio projects made by `loop.workflows.project.init_project` from generated
support tickets (the generator of `scripts/make_sample.py`), embedded with the real model at init
(not timed).

    python -m bench.backend                      # everything, a readable report (about 6-10 minutes)
    python -m bench.backend --json               # the same as JSON
    python -m bench.backend --sections predict,retrain,intake   # no Label Studio projects (faster)
    python -m bench.backend --sections predict --service-env OPENBLAS_NUM_THREADS=1   # try a setting
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np

SECTIONS = ("predict", "retrain", "intake", "submit", "push")
CLASSES = 20
# Redis-only projects get ids far above Label Studio's, so they never meet a real project.
P_PREDICT, P_1K, P_10K = 900_001, 900_002, 900_003
TASK0, ANN0 = 10_000_000, 50_000_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms_stats(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "max_ms": float(a.max()), "min_ms": float(a.min())}


# -- the stack --------------------------------------------------------------------------------
@contextmanager
def running_stack(ls_venv: str, auth: bool, keep: bool, service_env: dict[str, str] | None = None) -> Iterator[Any]:
    """Start the real stack on free ports in a temp workspace; stop it (and clean up) afterwards.

    `service_env`: extra environment for every service `up` starts (they inherit this process's
    environment), e.g. to try a setting before changing the library."""
    from loop.services import stack
    from loop.services.settings import load_settings

    root = Path(tempfile.mkdtemp(prefix="loop-bench-backend-"))
    env = {
        "LOOP_WORKSPACE": str(root / "ws"),
        "LOOP_LABEL_STUDIO_VENV": ls_venv,
        "LOOP_REDIS_PORT": str(free_port()),
        "LOOP_LABEL_STUDIO_PORT": str(free_port()),
        "LOOP_ML_BACKEND_PORT": str(free_port()),
        "LOOP_ML_BACKEND_USER": "label-studio" if auth else "",
        "LOOP_ML_BACKEND_PASSWORD": "bench-backend-secret" if auth else "",
        "LOOP_ML_BACKEND_AUTH": "on" if auth else "off",
        "LOOP_CONFIG": str(root / "no-loop.toml"),  # never pick up a loop.toml from the current directory
        **(service_env or {}),
    }
    cleared = ("REDIS_URL", "LOOP_LABEL_STUDIO_URL", "LOOP_ML_BACKEND_URL", "LABEL_STUDIO_USER_TOKEN",
               "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USERNAME")
    saved = {k: os.environ.get(k) for k in (*env, *cleared)}
    os.environ.update(env)
    for k in cleared:
        os.environ.pop(k, None)
    settings = load_settings()
    try:
        t0 = time.perf_counter()
        stack.up(settings, log=lambda m: log(f"  {m}"))
        log(f"  stack up in {time.perf_counter() - t0:.0f} s (workspace {settings.workspace_path})")
        yield settings
    finally:
        stack.down(settings, log=lambda m: log(f"  {m}"))
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if keep:
            log(f"  workspace kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """`n` processes that spin on a CPU each for the whole run: a box whose cores are shared with
    other work (the next_round benchmark showed what that does to BLAS threads)."""
    import subprocess

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def wait_trainer_idle(store, timeout: float = 120.0) -> float:
    """Wait until the trainer has read and acknowledged every event of every project; returns seconds waited."""
    from loop.services.store import Keys

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        busy = False
        for p in store.project_ids():
            key = Keys.events(p)
            if not store.r.exists(key):
                continue
            last = store.r.xinfo_stream(key)["last-generated-id"]
            groups = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g
                      for g in store.r.xinfo_groups(key)}
            g = groups.get(store.GROUP)
            if g is None or g["pending"] or g["last-delivered-id"] != last:
                busy = True
                break
        if not busy:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError(f"the trainer did not drain its event streams in {timeout:.0f} s")


# -- synthetic Redis-only projects ---------------------------------------------------------------
def _iso(i: int) -> str:
    return (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_project(store, cache, p: int, n_labels: int, n_unlabelled: int, seed: int) -> dict[str, Any]:
    """A loop project in Redis only: items with synthetic vectors in the cache and `n_labels` label records."""
    from bench.next_round import SHARED, SPREAD, synthetic
    from loop.core.dataset import text_key
    from loop.core.embeddings import key_for_hash

    X_lab, y, X_pool = synthetic(n_unlabelled, n_labels, CLASSES, spread=SPREAD, shared=SHARED, seed=seed)
    X = np.vstack([X_lab, X_pool])
    items, vectors, texts = {}, {}, {}
    for i in range(len(X)):
        item_id = f"b{p}-{i:06d}"
        text = f"bench project {p} item {i}"
        h = text_key(text)
        items[item_id] = {"task_id": TASK0 + i, "key": h}
        vectors[key_for_hash(h)] = X[i]
        texts[item_id] = text
    cache.put_many(vectors)
    labels = sorted(set(y))
    store.save_project(p, {"id": p, "labels": labels, "text_field": "text", "label_field": None,
                           "source": f"bench:{p}", "created_at": time.time(), "guideline_version": None},
                       make_current=False)
    store.add_items(p, items)
    ids = list(items)
    records = {}
    for i in range(n_labels):
        aid = str(ANN0 + i)
        records[aid] = {"id": aid, "item_id": ids[i], "task_id": TASK0 + i, "annotator": f"annotator-{i % 3}",
                        "ls_user_id": 1000 + i % 3, "label": y[i], "skipped": False, "created_at": _iso(i),
                        "updated_at": _iso(i), "guideline_version": None}
    store.upsert_annotations(p, records)
    return {"p": p, "X": X, "y": list(y), "labels": labels, "ids": ids, "texts": texts,
            "n_labels": n_labels, "next_ann": ANN0 + n_labels}


def webhook_payload(proj: dict[str, Any], index: int, annotation_id: int, label: str,
                    action: str = "ANNOTATION_CREATED") -> bytes:
    """A webhook as Label Studio sends it (the shape tests/ml_backend/test_app.py uses) for item `index`."""
    from loop.labels.interface import choice_result

    item = proj["ids"][index]
    task_id = TASK0 + index
    return json.dumps({
        "action": action, "project": {"id": proj["p"]},
        "annotation": {"id": annotation_id, "task": task_id, "completed_by": 1000 + annotation_id % 3,
                       "was_cancelled": False, "result": choice_result(label),
                       "created_at": _iso(annotation_id - ANN0), "updated_at": _iso(annotation_id - ANN0)},
        "task": {"id": task_id, "project": proj["p"], "data": {"text": proj["texts"][item], "item_id": item}},
    }).encode()


def backend_client(settings) -> httpx.Client:
    from loop.services.workspace import backend_login

    return httpx.Client(base_url=settings.backend_url, auth=backend_login(settings), timeout=60,
                        headers={"Content-Type": "application/json"})


# -- 1. /predict ---------------------------------------------------------------------------------
def bench_predict(settings, store, cache, *, requests: int, warmup: int, seed: int) -> dict[str, Any]:
    from bench.next_round import SHARED, SPREAD, synthetic
    from loop.core import model as model_lib
    from loop.core.embeddings import cache_key

    X_lab, y, X_pool = synthetic(100, 2000, CLASSES, spread=SPREAD, shared=SHARED, seed=seed)
    texts = [f"predict benchmark text number {i}" for i in range(100)]
    cache.put_many({cache_key(t): v for t, v in zip(texts, X_pool)})
    store.save_project(P_PREDICT, {"id": P_PREDICT, "labels": sorted(set(y)), "text_field": "text",
                                   "source": "bench:predict", "created_at": time.time()}, make_current=False)
    clf = model_lib.train(X_lab, y)
    version = store.next_model_version(P_PREDICT)
    store.save_model(P_PREDICT, model_lib.snapshot(clf, version, n_labels=len(y)))
    cached_before = len(cache)
    out = {"model_version": version, "classes": CLASSES, "requests": requests, "warmup": warmup, "sizes": {}}
    with backend_client(settings) as client:
        for size in (1, 100):
            body = json.dumps({"project": f"{P_PREDICT}.1700000000",
                               "tasks": [{"id": TASK0 + i, "data": {"text": t}} for i, t in enumerate(texts[:size])]})
            times = []
            for n in range(warmup + requests):
                t0 = time.perf_counter()
                resp = client.post("/predict", content=body)
                dt = time.perf_counter() - t0
                if resp.status_code != 200:
                    raise RuntimeError(f"/predict answered {resp.status_code}: {resp.text[:200]}")
                res = resp.json()
                if res["model_version"] != version or len(res["results"]) != size:
                    raise RuntimeError(f"/predict served {res['model_version']} with {len(res['results'])} results")
                if n >= warmup:
                    times.append(dt)
            out["sizes"][str(size)] = ms_stats(times)
            log(f"  /predict {size:>3} tasks: p50 {out['sizes'][str(size)]['p50_ms']:.1f} ms, "
                f"p99 {out['sizes'][str(size)]['p99_ms']:.1f} ms")
    if len(cache) != cached_before:
        raise RuntimeError("/predict embedded texts: they were meant to be in the cache already")
    p99 = out["sizes"]["100"]["p99_ms"]
    out["target"] = {"what": "p99 of /predict for 100 cached tasks < 50 ms", "value_ms": p99, "met": p99 < 50}
    return out


# -- 2. annotation event -> new model version ------------------------------------------------------
TRAINER_LINE = re.compile(r"project (\d+): model (v\d+) from (\d+) labels in ([\d.]+) s")


def trainer_log_times(settings, p: int) -> dict[str, float]:
    from loop.services.workspace import Workspace

    path = Workspace(settings).log_file("trainer")
    out = {}
    for m in TRAINER_LINE.finditer(path.read_text(errors="replace") if path.exists() else ""):
        if int(m.group(1)) == p:
            out[m.group(2)] = float(m.group(4))
    return out


def event_to_model(settings, store, proj: dict[str, Any], *, reps: int, timeout: float = 120.0) -> dict[str, Any]:
    """POST one new annotation (on an unlabelled item) and time until the current model version changes."""
    p = proj["p"]
    rows = []
    with backend_client(settings) as client:
        for rep in range(reps + 1):  # the first publishes the project's first model: a warm-up
            wait_trainer_idle(store)
            time.sleep(0.2)
            before = store.current_model_version(p)
            index = proj["n_labels"] + rep  # an unlabelled item: each event adds one label
            aid = proj["next_ann"]
            proj["next_ann"] += 1
            body = webhook_payload(proj, index, aid, proj["labels"][rep % len(proj["labels"])])
            t0 = time.perf_counter()
            resp = client.post("/webhook", content=body)
            t_ack = time.perf_counter() - t0
            if resp.status_code != 201:
                raise RuntimeError(f"/webhook answered {resp.status_code}: {resp.text[:200]}")
            deadline = t0 + timeout
            while (now := store.current_model_version(p)) == before:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no new model for project {p} within {timeout:.0f} s of the webhook")
                time.sleep(0.002)
            dt = time.perf_counter() - t0
            if rep:
                rows.append({"version": now, "seconds": dt, "webhook_ack_ms": t_ack * 1000})
    wait_trainer_idle(store)
    in_trainer = trainer_log_times(settings, p)
    for r in rows:
        r["trainer_retrain_s"] = in_trainer.get(r["version"])
    secs = [r["seconds"] for r in rows]
    logged = [r["trainer_retrain_s"] for r in rows if r["trainer_retrain_s"] is not None]
    return {"reps": reps, "median_s": statistics.median(secs), "max_s": max(secs), "min_s": min(secs),
            "webhook_ack_median_ms": statistics.median(r["webhook_ack_ms"] for r in rows),
            "trainer_logged_retrain_median_s": statistics.median(logged) if logged else None, "runs": rows}


def refit_alone(store, vectors, p: int, *, reps: int) -> dict[str, Any]:
    """`Trainer.retrain` in this process (it publishes versions too), split into load and fit."""
    from loop.core import model as model_lib
    from loop.workflows.training import training_set
    from ml_backend.trainer import Trainer

    trainer = Trainer(store, vectors, consumer="bench")
    trainer.retrain(p)  # warm-up
    total, load, fit = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        trainer.retrain(p)
        total.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ts = training_set(store, vectors, p)
        X, y = ts.X, ts.y
        load.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        clf = model_lib.train(X, y)
        fit.append(time.perf_counter() - t0)
    return {"reps": reps, "labels": len(y), "retrain_median_s": statistics.median(total), "retrain_max_s": max(total),
            "load_median_s": statistics.median(load), "fit_median_s": statistics.median(fit),
            "lbfgs_iterations": int(np.max(clf.n_iter_))}


def warm_vs_full(store, vectors, p: int, X_pool: np.ndarray, *, new_labels: int, reps: int) -> dict[str, Any]:
    """A full lbfgs refit on all labels against warm starts from the model fitted without the last
    `new_labels` labels (LogisticRegression(warm_start=True), same C and max_iter, one BLAS thread):
    one with lbfgs's default tolerance (1e-4, what the full refit uses) and one with 1e-6.

    Each is compared with a fit run to convergence (tol 1e-10) by the largest difference in
    predicted probability, on the new labels' items and on the unlabelled pool.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from loop.core import model as model_lib
    from loop.workflows.training import training_set

    ts = training_set(store, vectors, p)
    X, y = ts.X, np.asarray(ts.y)
    # The training set is sorted by item id and the items the events labelled have the highest ids:
    # its last `new_labels` rows stand for the labels that arrived since the previous model.
    old = slice(0, len(y) - new_labels)
    X_new = X[len(y) - new_labels:]
    params = model_lib.new_classifier().get_params()
    variants = {"full": lambda prev: model_lib.new_classifier(),
                "warm": lambda prev: copy.deepcopy(prev),
                "warm_tol1e-6": lambda prev: copy.deepcopy(prev).set_params(tol=1e-6)}
    with threadpool_limits(limits=1, user_api="blas"):
        previous = LogisticRegression(**{**params, "warm_start": True}).fit(X[old], y[old])
        if set(previous.classes_) != set(y):
            raise RuntimeError("the new labels add a class: a warm start cannot reuse the coefficients")
        times: dict[str, list[float]] = {k: [] for k in variants}
        fitted = {}
        for rep in range(reps + 1):
            for name, make in variants.items():
                clf = make(previous)
                t0 = time.perf_counter()
                clf.fit(X, y)
                if rep:  # the first round is a warm-up
                    times[name].append(time.perf_counter() - t0)
                fitted[name] = clf
        ref = LogisticRegression(**{**params, "tol": 1e-10, "max_iter": 100_000}).fit(X, y)
    out: dict[str, Any] = {"labels": len(y), "new_labels": new_labels, "reps": reps, "pool": len(X_pool)}
    for name, clf in fitted.items():
        out[name] = {"median_s": statistics.median(times[name]), "iterations": int(np.max(clf.n_iter_)),
                     "max_dp_new": float(np.abs(clf.predict_proba(X_new) - ref.predict_proba(X_new)).max()),
                     "max_dp_pool": float(np.abs(clf.predict_proba(X_pool) - ref.predict_proba(X_pool)).max()),
                     "pool_agreement": float(np.mean(clf.predict(X_pool) == ref.predict(X_pool)))}
    return out


def bench_retrain(settings, store, vectors, projects: dict[int, dict], *, reps: int) -> dict[str, Any]:
    out = {}
    for n, proj in projects.items():
        e2m = event_to_model(settings, store, proj, reps=reps)
        log(f"  {n:>6,} labels: event -> model median {e2m['median_s']:.2f} s (max {e2m['max_s']:.2f})")
        alone = refit_alone(store, vectors, proj["p"], reps=reps)
        log(f"  {n:>6,} labels: Trainer.retrain median {alone['retrain_median_s']:.3f} s "
            f"(load {alone['load_median_s']:.3f}, fit {alone['fit_median_s']:.3f})")
        pool = proj["X"][proj["next_ann"] - ANN0:]  # the items nobody labelled
        warm = [warm_vs_full(store, vectors, proj["p"], pool, new_labels=k, reps=reps) for k in (1, 50)]
        for w in warm:
            log(f"  {n:>6,} labels, {w['new_labels']} new: " + ", ".join(
                f"{k} {w[k]['median_s']:.3f} s ({w[k]['iterations']} it, max |dp| new {w[k]['max_dp_new']:.3f})"
                for k in ("full", "warm", "warm_tol1e-6")))
        out[str(n)] = {"event_to_model": e2m, "refit": alone, "warm_start": warm}
    return out


# -- 3. webhook intake ------------------------------------------------------------------------------
def bench_intake(settings, store, proj: dict[str, Any], *, count: int, threads: int, seconds: float,
                 predict_probe: float = 0.0) -> dict[str, Any]:
    """Valid ANNOTATION_UPDATED webhooks for the project's existing annotations (its size stays fixed):
    `count` of them or `seconds` of sending, whichever ends first; sequentially, then from `threads`
    threads. With `predict_probe` > 0, a further run of that many seconds sends webhooks while another
    client asks /predict for one task every 50 ms, to see whether webhooks delay predictions."""
    n_labels = proj["n_labels"]
    bodies = [webhook_payload(proj, i % n_labels, ANN0 + i % n_labels, proj["y"][i % n_labels], "ANNOTATION_UPDATED")
              for i in range(count)]
    out: dict[str, Any] = {"count_max": count, "seconds_max": seconds, "labels": n_labels}

    def send(client: httpx.Client, chunk: list[bytes], times: list[float], deadline: float) -> None:
        for b in chunk:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            resp = client.post("/webhook", content=b)
            times.append(time.perf_counter() - t0)
            if resp.status_code != 201:
                raise RuntimeError(f"/webhook answered {resp.status_code}: {resp.text[:200]}")

    wait_trainer_idle(store)
    with backend_client(settings) as client:
        send(client, bodies[:20], [], float("inf"))  # warm-up
        times: list[float] = []
        t0 = time.perf_counter()
        send(client, bodies, times, t0 + seconds)
        wall = time.perf_counter() - t0
    out["sequential"] = {"sent": len(times), "per_s": len(times) / wall, "seconds": wall, **ms_stats(times)}
    log(f"  {n_labels:>6,} labels, sequential: {len(times)} in {wall:.1f} s, {len(times) / wall:.0f} webhooks/s "
        f"(p50 {out['sequential']['p50_ms']:.1f} ms, p99 {out['sequential']['p99_ms']:.1f} ms)")
    wait_trainer_idle(store)
    clients = [backend_client(settings) for _ in range(threads)]
    try:
        for c in clients:
            send(c, bodies[:5], [], float("inf"))
        per_thread: list[list[float]] = [[] for _ in range(threads)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(send, clients[k], bodies[k::threads], per_thread[k], t0 + seconds)
                       for k in range(threads)]
            for f in futures:
                f.result()
        wall = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    times = [t for ts in per_thread for t in ts]
    out["concurrent"] = {"threads": threads, "sent": len(times), "per_s": len(times) / wall, "seconds": wall,
                         **ms_stats(times)}
    log(f"  {n_labels:>6,} labels, {threads} threads: {len(times)} in {wall:.1f} s, {len(times) / wall:.0f} webhooks/s "
        f"(p50 {out['concurrent']['p50_ms']:.1f} ms, p99 {out['concurrent']['p99_ms']:.1f} ms)")
    wait_trainer_idle(store)
    if predict_probe > 0:
        out["predict_during_intake"] = predict_while_webhooks(settings, store, bodies, predict_probe)
        r = out["predict_during_intake"]
        log(f"  /predict (1 task) during webhooks: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"max {r['max_ms']:.1f} ms")
        wait_trainer_idle(store)
    return out


def predict_while_webhooks(settings, store, bodies: list[bytes], seconds: float) -> dict[str, Any]:
    """/predict latency (1 cached task, the predict section's project) while webhooks are sent back to back."""
    body = json.dumps({"project": P_PREDICT, "tasks": [{"id": TASK0, "data": {"text": "predict benchmark text number 0"}}]})
    stop = threading.Event()

    def flood() -> None:
        with backend_client(settings) as c:
            i = 0
            while not stop.is_set():
                c.post("/webhook", content=bodies[i % len(bodies)])
                i += 1

    times = []
    with backend_client(settings) as c, ThreadPoolExecutor(1) as pool:
        c.post("/predict", content=body)
        job = pool.submit(flood)
        time.sleep(0.5)
        deadline = time.perf_counter() + seconds
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                resp = c.post("/predict", content=body)
                times.append(time.perf_counter() - t0)
                if resp.status_code != 200 or not resp.json()["results"]:
                    raise RuntimeError(f"/predict answered {resp.status_code}: {resp.text[:200]}")
                time.sleep(0.05)
        finally:
            stop.set()
            job.result()
    return {"seconds": seconds, **ms_stats(times)}


# -- Label Studio projects ------------------------------------------------------------------------------
def generate_rows(n: int, seed: int) -> list[dict[str, str]]:
    """`n` distinct support tickets from the demo generator (scripts/make_sample.py), labels in its proportions."""
    from scripts import make_sample as ms

    rng = random.Random(seed)
    labels = list(ms.COUNTS)
    weights = [ms.COUNTS[lab] for lab in labels]
    rows, seen = [], set()
    while len(rows) < n:
        label = rng.choices(labels, weights)[0]
        for _ in range(50):
            text = ms.make_text(rng.choice(ms.TEMPLATES[label]), label, rng)
            if text.lower() not in seen:
                break
        else:
            text = f"{text} (ref {len(rows)})"
        seen.add(text.lower())
        rows.append({"id": f"bk-{len(rows) + 1:05d}", "text": text, "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def init(ctx, path: Path, title: str, connect_backend: bool) -> int:
    from loop.workflows.project import init_project

    t0 = time.perf_counter()
    res = init_project(ctx, path, label_field="label", title=title, connect_backend=connect_backend)
    log(f"  project {res['project_id']} ({title}): {res['items']} items, {res['embedded']} embedded, "
        f"{time.perf_counter() - t0:.0f} s")
    return res["project_id"]


# -- 4. annotator submit ---------------------------------------------------------------------------------
@contextmanager
def null_webhook_receiver() -> Iterator[str]:
    """A local HTTP endpoint that answers every POST with 200 at once: what a webhook costs Label
    Studio itself, whatever the receiver does."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def bench_submit(ctx, rows: list[dict], projects: dict[str, int], *, submits: int, warmup: int,
                 blocks: int) -> dict[str, Any]:
    """Submit annotations as a logged-in annotator to each project; `projects`: condition -> project id.

    Two modes: "paced" waits before each submit until the trainer has handled every event (a person
    takes seconds per item, so the retrain a submit triggers is over before the next one), taking
    the projects in turn submit by submit; "back-to-back" submits without pause, in `blocks`
    alternating blocks per project, so the retrains run while Label Studio serves the next submits.
    """
    from label_studio_sdk import LabelStudio

    from loop.labels.interface import choice_result
    from loop.workflows.annotators import add_annotator
    from tests.helpers import login_token

    store = ctx.store
    password = "bench-annotator-pass"
    add_annotator(ctx, "bench-annotator", password=password)
    token = login_token(ctx.settings.ls_url, "bench-annotator@loop.local", password)
    sdk = LabelStudio(base_url=ctx.settings.ls_url, api_key=token, timeout=60)
    label_of = {r["id"]: r["label"] for r in rows}
    queues = {}
    for name, p in projects.items():
        items = store.items(p)
        queues[name] = [(items[i]["task_id"], label_of[i]) for i in sorted(items)]
    per_block = submits // blocks
    need = warmup + 2 * per_block * blocks
    if min(len(q) for q in queues.values()) < need:
        raise RuntimeError(f"the submit projects need at least {need} tasks")

    def submit(name: str) -> float:
        task_id, label = queues[name].pop(0)
        t0 = time.perf_counter()
        sdk.annotations.create(id=task_id, result=choice_result(label))
        return time.perf_counter() - t0

    for _ in range(warmup):
        for name in projects:
            submit(name)
    wait_trainer_idle(store)
    p_with = projects["with ML backend"]
    events_before = store.event_count(p_with)
    out: dict[str, Any] = {"submits": per_block * blocks, "warmup": warmup, "blocks": blocks, "modes": {}}
    for mode in ("paced", "back-to-back"):
        times: dict[str, list[float]] = {name: [] for name in projects}
        if mode == "paced":  # one submit per project in turn, so drift on the machine hits all alike
            for _ in range(per_block * blocks):
                for name in projects:
                    wait_trainer_idle(store)
                    time.sleep(0.05)
                    times[name].append(submit(name))
        else:  # blocks per project, so a block's retrains overlap its own submits only
            for _ in range(blocks):
                for name in projects:
                    wait_trainer_idle(store)
                    times[name] += [submit(name) for _ in range(per_block)]
        stats = {name: ms_stats(t) for name, t in times.items()}
        base = stats["without"]
        for st in stats.values():
            st["delta_p50_ms"] = st["p50_ms"] - base["p50_ms"]
            st["delta_p99_ms"] = st["p99_ms"] - base["p99_ms"]
        out["modes"][mode] = stats
        log(f"  {mode}: " + "; ".join(f"{n} p50 {st['p50_ms']:.1f} / p99 {st['p99_ms']:.1f} ms"
                                      for n, st in stats.items()))
    wait_trainer_idle(store)
    events = store.event_count(p_with) - events_before
    if events < 2 * per_block * blocks:
        raise RuntimeError(f"only {events} webhook events reached the backend for {2 * per_block * blocks} submits")
    for name, p in projects.items():
        if p != p_with and store.event_count(p):
            raise RuntimeError(f"project {p} ({name}) sent webhooks to the backend")
    out["webhook_events_received"] = events
    out["model_version_with_backend"] = store.current_model_version(p_with)
    paced = out["modes"]["paced"]["with ML backend"]
    out["target"] = {"what": "paced submits with the backend <= 20 ms slower (p50) than without",
                     "value_ms": paced["delta_p50_ms"], "met": paced["delta_p50_ms"] <= 20}
    return out


# -- 5. bulk push ---------------------------------------------------------------------------------------
@contextmanager
def timed_calls(obj: Any, names: tuple[str, ...]) -> Iterator[dict[str, list[float]]]:
    """Time every call of these methods of `obj` (wrapped on the instance, restored afterwards)."""
    spent: dict[str, list[float]] = {n: [] for n in names}

    def wrap(name: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - t0)
        return timed

    for n in names:
        setattr(obj, n, wrap(n, getattr(obj, n)))
    try:
        yield spent
    finally:
        for n in names:
            delattr(obj, n)


def bench_push(ctx, rows: list[dict], p: int, *, train_on: int, seed: int) -> dict[str, Any]:
    from loop.core import model as model_lib
    from loop.core.embeddings import embed_texts
    from loop.workflows.predictions import PUSH_BATCH, push

    store = ctx.store
    rng = random.Random(seed)
    sample = rng.sample(rows, train_on)
    X, new = embed_texts([r["text"] for r in sample], ctx.cache, ctx.embedder)
    assert new == 0, "the push project's items are embedded at init"
    clf = model_lib.train(X, [r["label"] for r in sample])
    version = store.next_model_version(p)
    store.save_model(p, model_lib.snapshot(clf, version, n_labels=train_on))
    calls = ("predictions", "import_predictions", "update_project")
    with timed_calls(ctx.ls, calls) as spent:
        t0 = time.perf_counter()
        res = push(ctx, p)
        t_push = time.perf_counter() - t0
    visible = sum(1 for pr in ctx.ls.predictions(p) if pr.get("model_version") == version)
    t_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = push(ctx, p)  # idempotent: lists the 3,000 predictions, pushes none
    t_again = time.perf_counter() - t0
    n = len(store.items(p))
    out = {"tasks": n, "push_batch": PUSH_BATCH, "model_version": version, "pushed": res["pushed"], "push_s": t_push,
           "visible_predictions": visible, "push_and_count_s": t_total, "repush_pushed": again["pushed"],
           "repush_s": t_again, "label_studio_calls_s": {n: sum(v) for n, v in spent.items()},
           "import_requests_s": spent["import_predictions"]}
    out["local_s"] = t_push - sum(out["label_studio_calls_s"].values())
    out["target"] = {"what": f"{n:,} tasks scored and visible in Label Studio within 5 s",
                     "value_s": t_total, "met": visible == n and t_total <= 5}
    log(f"  push {res['pushed']} predictions in {t_push:.2f} s (import requests "
        f"{', '.join(f'{x:.2f}' for x in spent['import_predictions'])} s); {visible} of version {version} visible "
        f"after {t_total:.2f} s; re-push {t_again:.2f} s")
    return out


# -- reporting ------------------------------------------------------------------------------------------
def md_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    def fmt(cells):
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([fmt(head), sep, *map(fmt, rows)])


def yes(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, numpy {m['numpy']}, "
             f"scikit-learn {m['scikit_learn']}; backend auth: {res['auth']}; service env: "
             f"{' '.join(f'{k}={v}' for k, v in res['service_env'].items()) or '-'}; busy processes: {res['busy']}; "
             "load average before/after: "
             f"{m['loadavg_before'][0]:.2f}/{m['loadavg_after'][0]:.2f}; total {res['seconds']:.0f} s", ""]
    if "predict" in res:
        r = res["predict"]
        lines += [f"1. /predict ({r['requests']} requests after {r['warmup']} warm-up, cached texts, "
                  f"{r['classes']} classes)", md_table(
            ["tasks", "p50 ms", "p99 ms", "mean ms", "max ms"],
            [[k, f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}", f"{s['mean_ms']:.1f}", f"{s['max_ms']:.1f}"]
             for k, s in r["sizes"].items()]),
            f"target p99 < 50 ms for 100 tasks: {yes(r['target']['met'])} ({r['target']['value_ms']:.1f} ms)", ""]
    if "retrain" in res:
        r = res["retrain"]
        lines += ["2. annotation event -> new model version (webhook POST until store.current_model_version changes)",
                  md_table(["labels", "median s", "max s", "webhook ack ms", "retrain in trainer s",
                            "Trainer.retrain s", "load s", "fit s", "lbfgs it"],
                           [[f"{int(n):,}", f"{v['event_to_model']['median_s']:.2f}", f"{v['event_to_model']['max_s']:.2f}",
                             f"{v['event_to_model']['webhook_ack_median_ms']:.1f}",
                             f"{v['event_to_model']['trainer_logged_retrain_median_s'] or float('nan'):.2f}",
                             f"{v['refit']['retrain_median_s']:.3f}", f"{v['refit']['load_median_s']:.3f}",
                             f"{v['refit']['fit_median_s']:.3f}", str(v['refit']['lbfgs_iterations'])]
                            for n, v in r.items()]), "",
                  "   full refit vs warm start (sklearn, one BLAS thread, medians; max |dp|: largest difference in "
                  "probability from a fit run to convergence, on the new labels' items and on the unlabelled pool)",
                  md_table(["labels", "new", "fit", "s", "lbfgs it", "max |dp| new", "max |dp| pool", "pool argmax same"],
                           [[f"{w['labels']:,}", str(w["new_labels"]), k, f"{w[k]['median_s']:.3f}",
                             str(w[k]["iterations"]), f"{w[k]['max_dp_new']:.3f}", f"{w[k]['max_dp_pool']:.3f}",
                             f"{w[k]['pool_agreement']:.3f}"]
                            for v in r.values() for w in v["warm_start"] for k in ("full", "warm", "warm_tol1e-6")]),
                  ""]
    if "intake" in res:
        r = res["intake"]
        lines += ["3. webhook intake (valid ANNOTATION_UPDATED webhooks, loopback; "
                  f"{next(iter(r.values()))['count_max']:,} or {next(iter(r.values()))['seconds_max']:g} s per run, "
                  "whichever ends first)", md_table(
            ["labels", "clients", "sent", "per s", "p50 ms", "p99 ms"],
            [[f"{int(n):,}", mode, f"{v[k]['sent']:,}", f"{v[k]['per_s']:.0f}", f"{v[k]['p50_ms']:.1f}",
              f"{v[k]['p99_ms']:.1f}"]
             for n, v in r.items() for k, mode in (("sequential", "1"), ("concurrent", str(v["concurrent"]["threads"])))])]
        for n, v in r.items():
            if "predict_during_intake" in v:
                d = v["predict_during_intake"]
                lines.append(f"/predict (1 task) while webhooks of the {int(n):,}-label project arrive back to back: "
                             f"p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms, max {d['max_ms']:.1f} ms ({d['n']} requests)")
        lines.append("")
    if "submit" in res:
        r = res["submit"]
        lines += [f"4. annotator submit (SDK annotations.create with the annotator's token, {r['submits']} per "
                  "project and mode; paced: projects in turn, the trainer idle before each submit; back-to-back: "
                  f"{r['blocks']} alternating blocks)",
                  md_table(["mode", "project", "p50 ms", "p99 ms", "mean ms", "p50 vs without", "p99 vs without"],
                           [[mode, name, f"{st['p50_ms']:.1f}", f"{st['p99_ms']:.1f}", f"{st['mean_ms']:.1f}",
                             f"{st['delta_p50_ms']:+.1f}", f"{st['delta_p99_ms']:+.1f}"]
                            for mode, stats in r["modes"].items() for name, st in stats.items()]),
                  f"target <= 20 ms more (paced, p50): {yes(r['target']['met'])} ({r['target']['value_ms']:+.1f} ms)", ""]
    if "push" in res:
        r = res["push"]
        lines += [f"5. predictions push: {r['pushed']:,} of {r['tasks']:,} tasks in {r['push_s']:.2f} s; "
                  f"{r['visible_predictions']:,} predictions of {r['model_version']} counted back after "
                  f"{r['push_and_count_s']:.2f} s; idempotent re-push {r['repush_s']:.2f} s "
                  f"({r['repush_pushed']} pushed); target <= 5 s: {yes(r['target']['met'])}",
                  "   of the push: " + ", ".join(f"{n} {v:.2f} s" for n, v in r["label_studio_calls_s"].items())
                  + f" (Label Studio requests), the rest {r['local_s']:.2f} s; import requests of "
                  f"{r['push_batch']:,} predictions (loop.workflows.predictions.PUSH_BATCH): " + ", ".join(f"{x:.2f}" for x in r["import_requests_s"]) + " s", ""]
    return "\n".join(lines)


def _sections(text: str) -> list[str]:
    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in SECTIONS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}; got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.backend", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", type=_sections, default=list(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    ap.add_argument("--label-studio-venv", default=os.environ.get("LOOP_LABEL_STUDIO_VENV") or str(Path(__file__).resolve().parents[1] / ".venv-label-studio"),
                    help="virtualenv holding the Label Studio server (default $LOOP_LABEL_STUDIO_VENV, else .venv-label-studio from `make`)")
    ap.add_argument("--auth", action="store_true",
                    help="run the backend with a basic-auth login (as the integration tests do)")
    ap.add_argument("--requests", type=int, default=200, help="timed /predict requests per size (default 200)")
    ap.add_argument("--retrain-reps", type=int, default=5, help="timed events / refits per label count (default 5)")
    ap.add_argument("--labels", default="1000,10000", help="label counts for the retrain section (default 1000,10000)")
    ap.add_argument("--webhooks", type=int, default=2000, help="webhooks per intake run (default 2000)")
    ap.add_argument("--intake-seconds", type=float, default=30.0,
                    help="at most this long per intake run, whichever of it and --webhooks ends first (default 30)")
    ap.add_argument("--threads", type=int, default=4, help="client threads of the concurrent intake run (default 4)")
    ap.add_argument("--submits", type=int, default=100, help="timed submits per project (default 100)")
    ap.add_argument("--push-tasks", type=int, default=3000, help="tasks of the push project (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the services (repeatable), e.g. OPENBLAS_NUM_THREADS=1")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="keep N CPU-spinning processes running during the whole run (default 0)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspace (logs) afterwards")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a report")
    args = ap.parse_args(argv)
    label_counts = [int(v) for v in args.labels.split(",") if v.strip()]
    if not 1 <= len(label_counts) <= 4:
        ap.error("--labels takes one to four label counts")
    service_env = {}
    for kv in args.service_env:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            ap.error(f"--service-env expects KEY=VALUE, got {kv!r}")
        service_env[key] = value
    if not (Path(args.label_studio_venv) / "bin" / "label-studio").exists():
        ap.error(f"no Label Studio in {args.label_studio_venv}; pass --label-studio-venv")

    from bench.next_round import machine
    from loop.services.context import Context

    load_before = os.getloadavg()
    started = time.perf_counter()
    res: dict[str, Any] = {"sections": args.sections, "auth": args.auth, "service_env": service_env,
                           "busy": args.busy}
    with busy_cores(args.busy), running_stack(args.label_studio_venv, args.auth, args.keep, service_env) as settings:
        ctx = Context(settings)
        store, cache = ctx.store, ctx.cache
        if "predict" in args.sections:
            log("1. /predict")
            res["predict"] = bench_predict(settings, store, cache, requests=args.requests, warmup=20, seed=args.seed)
        projects = {}
        if {"retrain", "intake"} & set(args.sections):
            for n, p in zip(label_counts, (P_1K, P_10K, P_10K + 1, P_10K + 2)):
                t0 = time.perf_counter()
                projects[n] = build_project(store, cache, p, n, 200, seed=args.seed + n)
                log(f"  built project {p}: {n:,} labels, {n + 200:,} items in {time.perf_counter() - t0:.1f} s")
        if "retrain" in args.sections:
            log("2. event -> model")
            res["retrain"] = bench_retrain(settings, store, ctx.vectors, projects, reps=args.retrain_reps)
        if "intake" in args.sections:
            log("3. webhook intake")
            largest = max(projects)
            res["intake"] = {str(n): bench_intake(settings, store, proj, count=args.webhooks, threads=args.threads,
                                                  seconds=args.intake_seconds,
                                                  predict_probe=10.0 if n == largest and "predict" in args.sections else 0)
                             for n, proj in projects.items()}
        if {"submit", "push"} & set(args.sections):
            log("Label Studio projects (embedding with the real model; not timed)")
            tmp = settings.workspace_path / "bench-data"
            tmp.mkdir(parents=True, exist_ok=True)
            rows = generate_rows(max(args.push_tasks if "push" in args.sections else 0, 300), args.seed)
            small = write_jsonl(tmp / "tickets-300.jsonl", rows[:300])
            if "push" in args.sections:
                p_push = init(ctx, write_jsonl(tmp / f"tickets-{args.push_tasks}.jsonl", rows[:args.push_tasks]),
                              "bench: bulk push", connect_backend=True)
            if "submit" in args.sections:
                from loop.labels.interface import LABEL_CHANGES

                projects = {"without": init(ctx, small, "bench: without ML backend", connect_backend=False),
                            "null webhook": init(ctx, small, "bench: webhook to a null receiver", connect_backend=False),
                            "null webhook, no payload": init(ctx, small, "bench: payload-less webhook to a null receiver",
                                                             connect_backend=False),
                            "with ML backend": init(ctx, small, "bench: with ML backend", connect_backend=True)}
                with null_webhook_receiver() as null_url:
                    # loop's webhooks carry no payload; the "null webhook" project gets one back, to
                    # show what Label Studio's payload costs a submit by itself.
                    hook = ctx.ls.ensure_webhook(projects["null webhook"], null_url, LABEL_CHANGES)
                    ctx.ls._http("turn the payload on", "PATCH", f"/api/webhooks/{hook}/", json={"send_payload": True})
                    ctx.ls.ensure_webhook(projects["null webhook, no payload"], null_url, LABEL_CHANGES)
                    log("4. annotator submit")
                    res["submit"] = bench_submit(ctx, rows[:300], projects, submits=args.submits, warmup=5,
                                                 blocks=2)
            if "push" in args.sections:
                wait_trainer_idle(store)
                log("5. predictions push")
                res["push"] = bench_push(ctx, rows[:args.push_tasks], p_push, train_on=300, seed=args.seed)
    res["seconds"] = time.perf_counter() - started
    res["machine"] = {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
