"""More than one trainer on one Redis: each event handled and acknowledged once, one training per
burst, versions unique and increasing, and a trainer killed mid-burst losing nothing.

The in-process tests drive two `Trainer` objects step by step; the last test starts two real trainer
processes (`python -m ml_backend.trainer`, as `loop up` starts one) on the session's real Redis.
Their events carry the labels (no Label Studio needed: the trainers are pointed at a closed port,
so their catch-up reads fail and are logged, as when Label Studio is down)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from loop.core.embeddings import DIM, key_for_hash
from loop.services.store import Keys
from loop.services.vectors import EmbeddingCache, ItemVectors
from ml_backend.trainer import NOTHING, WAITING, Trainer
from tests.helpers import REPO

P = 6
ANNOTATOR = "many-trainers-ann"


class NoEmbedder:
    batch_size = 64

    def encode(self, texts):
        raise AssertionError(f"embedded {len(texts)} texts; every vector was cached")


def setup_project(store, cache, n=60):
    store.save_project(P, {"labels": ["neg", "pos"]}, make_current=False)
    rng = np.random.default_rng(1)
    items, vectors = {}, {}
    for i in range(n):
        items[f"m{i}"] = {"task_id": 600 + i, "key": f"many{i}"}
        v = rng.normal(size=DIM) + (3 if i % 2 else -3)
        vectors[key_for_hash(f"many{i}")] = (v / np.linalg.norm(v)).astype(np.float32)
    store.add_items(P, items)
    cache.put_many(vectors)
    store.plan_round(P, {"id": 1}, {i: [ANNOTATOR] for i in items})


def label_event(n):
    return {"action": "ANNOTATION_CREATED", "remove": [],
            "upsert": [{"id": str(n), "item_id": f"m{n}", "annotator": ANNOTATOR, "label": "pos" if n % 2 else "neg",
                        "created_at": f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}"}]}


def versions(store):
    return [v.decode() for v in store.r.zrange(Keys.models(P), 0, -1)]


def trainer(store, cache, name, **kw):
    return Trainer(store, ItemVectors(store, cache, NoEmbedder()), consumer=name, coalesce_s=0.01, block_ms=50, **kw)


def test_the_holder_takes_the_events_another_trainer_read_and_that_one_trains_nothing(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    a, b = trainer(redis_store, cache, "trainer-a"), trainer(redis_store, cache, "trainer-b")
    for n in range(6):
        redis_store.append_event(P, label_event(n))
    assert len(redis_store.read_events("trainer-b", block_ms=10, count=2)[P]) == 2  # b is gathering its burst
    assert a.step() == {P: "v1"}  # a reads the other 4, takes b's 2 as well, trains once
    assert redis_store.load_model(P).n_labels == 6 and redis_store.backlog(P) == 0
    assert b.handle(P) is NOTHING and versions(redis_store) == ["v1"]  # b's turn: nothing left, nothing trained

    token = redis_store.acquire_training_lease(P, "trainer-a", 5_000)  # a is busy with the project
    redis_store.append_event(P, label_event(6))
    assert b.step() == {} and P in b._waiting  # b read the event, cannot take the project: it waits
    assert redis_store.backlog(P) == 1
    redis_store.release_training_lease(P, token)
    assert b.step() == {P: "v2"} and P not in b._waiting  # asked again once the lease could be free
    assert redis_store.backlog(P) == 0 and versions(redis_store) == ["v1", "v2"]


def test_the_retrain_interval_holds_across_trainers(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    a = trainer(redis_store, cache, "trainer-a", min_interval_s=0.5)
    b = trainer(redis_store, cache, "trainer-b", min_interval_s=0.5)
    redis_store.append_event(P, label_event(0))
    redis_store.append_event(P, label_event(1))
    assert a.step() == {P: "v1"}
    done = time.monotonic()
    redis_store.append_event(P, label_event(2))
    assert b.step() == {}  # the project cools down after a's training: b waits
    while not b.step():
        assert time.monotonic() - done < 3
    assert time.monotonic() - done >= 0.45 and versions(redis_store) == ["v1", "v2"]


def test_a_trainer_that_died_holding_the_project_is_taken_over_once_its_lease_expires(redis_store, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    for n in range(3):
        redis_store.append_event(P, label_event(n))
    redis_store.acquire_training_lease(P, "trainer-dead", 300)  # it took the project...
    redis_store.take_events(P, "trainer-dead")  # ...and its events, then was killed
    b = trainer(redis_store, cache, "trainer-b")
    assert b.step(pending=True) == {} and not b._waiting  # the sweep leaves a held project alone
    time.sleep(0.35)
    assert b.step(pending=True) == {P: "v1"}  # the lease expired: b takes the dead trainer's events
    assert redis_store.backlog(P) == 0 and len(redis_store.annotations(P)) == 3


def test_a_long_training_keeps_its_lease(redis_store, tmp_path):
    class Slow(Trainer):
        def retrain(self, p, lease=None):
            time.sleep(0.6)  # three times the lease: only renewing keeps it
            return super().retrain(p, lease)

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    slow = Slow(redis_store, ItemVectors(redis_store, cache, NoEmbedder()), consumer="slow", coalesce_s=0.01,
                block_ms=50, lease_ms=200)
    redis_store.append_event(P, label_event(0))
    redis_store.append_event(P, label_event(1))
    assert slow.step() == {P: "v1"} and redis_store.backlog(P) == 0
    assert redis_store.training_lease(P) == (None, 0)  # given back


def test_a_trainer_whose_lease_was_taken_publishes_nothing_and_leaves_the_events(redis_store, tmp_path):
    class Stalled(Trainer):
        def retrain(self, p, lease=None):
            redis_store.r.delete(Keys.training_lease(p))  # the lease expired while it stalled...
            redis_store.acquire_training_lease(p, "trainer-b", 5_000)  # ...and another trainer took the project
            return super().retrain(p, lease)

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    setup_project(redis_store, cache)
    stalled = Stalled(redis_store, ItemVectors(redis_store, cache, NoEmbedder()), consumer="trainer-a",
                      coalesce_s=0.01, block_ms=50)
    redis_store.append_event(P, label_event(0))
    redis_store.append_event(P, label_event(1))
    assert stalled.handle(P) is WAITING
    assert versions(redis_store) == [] and redis_store.current_model_version(P) is None
    assert redis_store.backlog(P) == 2  # for the new holder
    assert redis_store.training_lease(P)[0] == "trainer-b"  # not released by the stale trainer


# -- two real trainer processes ------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(name, redis_server, workspace, log_dir):
    env = {**os.environ, "REDIS_URL": f"unix://{redis_server.socket_file}", "LOOP_WORKSPACE": str(workspace),
           "LOOP_LABEL_STUDIO_URL": f"http://127.0.0.1:{_closed_port()}", "LABEL_STUDIO_USER_TOKEN": "unused",
           "LOOP_TRAINER_MIN_INTERVAL": "1", "LOOP_TRAINER_CATCH_UP": "3600", "PYTHONUNBUFFERED": "1",
           "LOOP_EMBEDDING_BACKEND": "torch"}  # the engine whose cache keys setup_project wrote (it embeds nothing)
    log = open(log_dir / f"{name}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "ml_backend.trainer", "--consumer", name], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(what, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _consumers(store):
    try:
        return {c["name"].decode(): c["pending"] for c in store.r.xinfo_consumers(Keys.events(P), "trainer")}
    except Exception:
        return {}


def _handled(log_text):
    """(events handled, events acknowledged) per line the trainer logs for project P."""
    return [(int(n), int(k)) for n, k in re.findall(rf"project {P}: (\d+) events handled \((\d+) acknowledged\)",
                                                     log_text)]


def _burst(store, first, count):
    """Events one by one, as webhooks come (the first wakes one trainer, the next ones the other,
    which is blocked on the streams meanwhile), well inside the 0.3 s the trainers gather a burst."""
    start = time.monotonic()
    ids = [store.append_event(P, label_event(n)) for n in range(first, first + count)]
    assert time.monotonic() - start < 0.2, "posting the burst took longer than the trainers gather one"
    return ids


def test_two_trainer_processes_share_a_burst_and_one_killed_mid_burst_loses_nothing(
        redis_server, redis_store, tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    cache = EmbeddingCache(workspace / "embeddings.sqlite")
    setup_project(redis_store, cache, n=120)
    procs = {name: _start(name, redis_server, workspace, tmp_path) for name in ("trainer-a", "trainer-b")}
    logs = lambda name: (tmp_path / f"{name}.log").read_text()  # noqa: E731
    try:
        _wait("both trainers started", lambda: all("reading the event streams" in logs(n) for n in procs), 120)
        time.sleep(0.2)
        started = time.monotonic()
        bursts, waited = [], 0
        for first in (0, 30, 60):  # three bursts of 30 events
            before = versions(redis_store)
            ids = _burst(redis_store, first, 30)
            _wait("the burst handled", lambda n=first // 30: redis_store.backlog(P) == 0
                  and len(versions(redis_store)) > n)
            time.sleep(0.5)  # anything a second training would publish
            bursts.append((len(ids), len(versions(redis_store)) - len(before)))
            waited = sum(len(re.findall(rf"project {P}: \S+ holds it", logs(n))) for n in procs)
        handled_s = time.monotonic() - started
        assert bursts == [(30, 1)] * 3, bursts  # every burst: one training, one version
        assert len(redis_store.annotations(P)) == 90
        assert waited >= 1, "no burst was read by both trainers (one always waited for the other's lease)"
        acked = {name: sum(k for _, k in _handled(logs(name))) for name in procs}
        assert sum(acked.values()) == 90  # each event acknowledged once: XACK counts only the first

        # Kill trainer-a while it holds events of a burst (trainer-b paused meanwhile, so that a
        # surely reads some); trainer-b takes them over.
        victim, survivor = procs["trainer-a"], procs["trainer-b"]
        before = versions(redis_store)
        os.killpg(survivor.pid, signal.SIGSTOP)
        _burst(redis_store, 90, 10)
        _wait("trainer-a holding events", lambda: _consumers(redis_store).get("trainer-a", 0) > 0, timeout=10)
        held = _consumers(redis_store).get("trainer-a", 0)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        os.killpg(survivor.pid, signal.SIGCONT)
        _burst(redis_store, 100, 10)  # the rest of the burst, with one trainer left
        _wait("the dead trainer's events taken over", lambda: redis_store.backlog(P) == 0, timeout=45)
        recovered_s = time.monotonic() - killed_at
        assert _consumers(redis_store).get("trainer-a", 0) == 0
        assert len(redis_store.annotations(P)) == 110 and redis_store.load_model(P).n_labels == 110
        assert redis_store.pending_projects() == []
        _wait("the survivor's log line", lambda: sum(k for _, k in _handled(logs("trainer-a") + logs("trainer-b")))
              >= 110, timeout=10)  # it logs just after acknowledging
        assert sum(k for _, k in _handled(logs("trainer-a") + logs("trainer-b"))) == 110
        after_kill = len(versions(redis_store)) - len(before)

        # A third trainer, killed while it holds the project's lease (training): the survivor takes
        # the project over once the lease expires (15 s).
        procs["trainer-c"] = _start("trainer-c", redis_server, workspace, tmp_path)
        _wait("trainer-c started", lambda: "reading the event streams" in logs("trainer-c"), 120)
        time.sleep(0.2)
        os.killpg(survivor.pid, signal.SIGSTOP)
        _burst(redis_store, 110, 10)
        _wait("trainer-c holding the lease", lambda: redis_store.training_lease(P)[0] == "trainer-c", timeout=10)
        os.killpg(procs["trainer-c"].pid, signal.SIGKILL)
        procs["trainer-c"].wait(10)
        killed_at = time.monotonic()
        os.killpg(survivor.pid, signal.SIGCONT)
        _wait("the dead holder's project taken over", lambda: redis_store.backlog(P) == 0
              and len(redis_store.annotations(P)) == 120 and redis_store.load_model(P).n_labels == 120, timeout=60)
        taken_over_s = time.monotonic() - killed_at
        assert redis_store.pending_projects() == [] and _consumers(redis_store).get("trainer-c", 0) == 0

        published = versions(redis_store)
        numbers = [int(v[1:]) for v in published]
        assert numbers == sorted(set(numbers)) and redis_store.current_model_version(P) == published[-1]
        print(f"\ntwo trainers: 3 bursts of 30 events -> {[v for _, v in bursts]} versions, {waited} waits, "
              f"acknowledged {acked}, {handled_s:.1f} s; trainer-a killed holding {held} events: "
              f"all 20 handled {recovered_s:.1f} s later, {after_kill} versions; trainer-c killed holding the "
              f"lease: its 10 events handled {taken_over_s:.1f} s later; versions {published}")
    except AssertionError:
        print({name: logs(name)[-3000:] for name in procs}, _consumers(redis_store), redis_store.backlog(P),
              versions(redis_store), redis_store.training_lease(P))
        raise
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
    assert procs["trainer-b"].returncode == 0, logs("trainer-b")[-2000:]  # stopped cleanly on SIGTERM
