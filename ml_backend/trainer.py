"""The trainer: consumes webhook events from Redis and publishes new model versions.

Label Studio never waits for training: `/webhook` only queues. This worker reads each project's
event stream through the consumer group "trainer", applies the label changes to the label store,
and refits once per burst (events arriving within `coalesce_s` of each other are one retrain).
loop's webhooks carry no payload (one would cost the annotator's request 19-30 ms), so for those
events the trainer asks Label Studio for the tasks changed since its last read
(`loop.services.sync.pull_changes`), once per burst. It also reads them unasked, when it starts
and then every minute (`catch_up`): Label Studio drops webhooks it cannot deliver, so a change
made while the backend or Redis was down is picked up all the same.
It retrains through the CLI's own path (`loop.workflows.training.retrain`): the project's recorded
training policy (aggregation, guideline version, adjudications) and item vectors from its own
cache, embedding from the texts in Redis what that cache lacks, so it needs no file of the host.
A new model is written under a new version and made current in one step; `/predict` picks
it up on its next request. Events are acknowledged only after that, so a trainer that dies
mid-batch leaves them for the next one.

Any number of trainers may share one Redis. A project is handled by one trainer at a time, the
holder of its training lease (`Store.acquire_training_lease`, renewed while it works): it takes
every event of the project not yet acknowledged, whichever trainer they were delivered to, trains
once, publishes only while it still holds the lease, and acknowledges under the lease too. A
trainer that reads events of a project another holds waits for the lease; the lease stays taken
for `min_interval_s` after a training, so the retrain interval holds across trainers. Events left
by a trainer that died are taken by the next holder (every `sweep_s`, once its lease expired).

Run it with `python -m ml_backend.trainer` (`loop up` does); a second one anywhere with the same
REDIS_URL (and Label Studio settings) shares the work.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import redis

from loop.services.store import LeaseLost, Store
from loop.services.sync import pull_changes
from loop.services.vectors import ItemVectors
from loop.workflows import training

log = logging.getLogger("loop.trainer")
CATCH_UP_S = 60.0  # the slow timer: a missed webhook costs at most this long
LEASE_MS = 15_000  # a trainer that stops renewing its lease (it died) frees the project after this long
SWEEP_S = 5.0      # how often a trainer takes over events no one handles (their trainer died)
PRUNE_IDLE_MS = 3_600_000  # consumers holding nothing and unseen this long leave the group
WAITING = object()  # `handle`: another trainer holds the project
NOTHING = object()  # `handle`: no event of the project was left (another trainer handled them)


class _Renewal:
    """Renews a training lease in the background while a project is handled, so a long pull or
    fit does not let it expire; a lease it fails to renew is lost (publishing then refuses)."""

    def __init__(self, store: Store, p: int, token: str, ttl_ms: int):
        self.store, self.p, self.token, self.ttl_ms = store, p, token, ttl_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{p}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.store.renew_training_lease(self.p, self.token, self.ttl_ms):
                    log.warning("project %s: training lease lost; what this trainer trains is not published", self.p)
                    return
            except redis.RedisError as exc:  # Redis away for a moment: try again at the next tick
                log.warning("project %s: could not renew the training lease (%s)", self.p, exc)

    def __enter__(self) -> "_Renewal":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


class Trainer:
    def __init__(self, store: Store, vectors: ItemVectors, *, ls=None, consumer: str = "trainer-1",
                 coalesce_s: float = 0.3, block_ms: int = 1000, min_interval_s: float = 0.0,
                 catch_up_s: float = CATCH_UP_S, lease_ms: int = LEASE_MS, sweep_s: float = SWEEP_S):
        """`min_interval_s`: at least this long between two retrains of a project (by any trainer);
        events arriving meanwhile join the next one (one model version for a stretch of submits, not
        one per submit). `catch_up_s`: how often the trainer reads Label Studio's changes without
        being told (`catch_up`), besides once when it starts. `consumer`: this trainer's name in the
        consumer group and on its leases. `lease_ms`: how long a project stays taken by a trainer
        that stopped renewing; `sweep_s`: how often `run` takes over events no trainer handles."""
        self.store, self.vectors, self.ls = store, vectors, ls
        self.consumer, self.coalesce_s, self.block_ms = consumer, coalesce_s, block_ms
        self.min_interval_s, self.catch_up_s = min_interval_s, catch_up_s
        self.lease_ms, self.sweep_s = lease_ms, sweep_s
        self._last_retrain = float("-inf")
        self._last_catch_up = float("-inf")
        self._waiting: dict[int, float] = {}  # project -> when to ask for its lease again (monotonic)
        self.stopping = threading.Event()
        self._rejected: set[tuple[str, str]] = set()  # dead-lettered once, not at every pull

    def _reject(self, p: int, annotation: dict[str, Any], reason: str) -> None:
        key = (str(annotation.get("id")), str(annotation.get("updated_at")))
        if key not in self._rejected:
            self._rejected.add(key)
            self.store.dead_letter(reason, {"project": p, "annotation": annotation})
            log.warning("project %s: %s", p, reason)

    def pull(self, p: int, ls_projects: set[int] | None = None) -> dict[str, int]:
        """Mirror the annotations Label Studio changed since the last pull into the label store: in
        the Label Studio projects the events name, or (None) in all of project p's."""
        if self.ls is None:
            raise RuntimeError("payload-less webhook events need a Label Studio client (Trainer(ls=...))")
        reject = lambda ann, why: self._reject(p, ann, why)  # noqa: E731
        if ls_projects is None:
            return pull_changes(self.store, self.ls, p, on_reject=reject)
        for lp in sorted(ls_projects):
            pull_changes(self.store, self.ls, p, on_reject=reject, ls_project=lp)
        return {}

    def step(self, pending: bool = False) -> dict[int, str | None]:
        """Handle one burst of events; returns project -> new model version (None: no model yet, or
        nothing new to learn) for each project this trainer handled. `pending`: instead of waiting
        for new events, take over those delivered and never acknowledged (a trainer died mid-batch)."""
        self.store.heartbeat()
        if pending:
            projects = set(self.store.pending_projects())
        else:
            batch = self.store.read_events(self.consumer, block_ms=self._wait_ms())
            if batch:  # coalesce: a burst of annotations is one retrain, and retrains keep their distance
                time.sleep(max(self.coalesce_s, self._last_retrain + self.min_interval_s - time.monotonic()))
                batch.update(self.store.read_events(self.consumer, block_ms=1, count=100_000))
            now = time.monotonic()
            projects = set(batch) | {p for p, at in self._waiting.items() if at <= now}
        published = {}
        for p in sorted(projects):
            version = self.handle(p, wait=not pending)
            if version is not WAITING and version is not NOTHING:
                published[p] = version
        if published:
            self._last_retrain = time.monotonic()
        return published

    def _wait_ms(self) -> int:
        """How long to block on the streams: until the first project waited for may be free."""
        if not self._waiting:
            return self.block_ms
        return max(1, min(self.block_ms, int((min(self._waiting.values()) - time.monotonic()) * 1000)))

    def handle(self, p: int, wait: bool = True) -> Any:
        """Take project p's lease and every event of it not yet acknowledged, apply them, retrain,
        publish and acknowledge; returns the version (None: nothing published), NOTHING when no
        event was left, or WAITING when another trainer holds the project (with `wait`, ask again
        when its lease may be free; the events stay pending meanwhile, and its holder may take them)."""
        token = self.store.acquire_training_lease(p, self.consumer, self.lease_ms)
        if token is None:
            if wait:
                holder, left_ms = self.store.training_lease(p)
                if p not in self._waiting:
                    log.info("project %s: %s holds it; its events wait for the lease", p, holder)
                self._waiting[p] = time.monotonic() + min(max(left_ms, 10), self.block_ms) / 1000
            return WAITING
        self._waiting.pop(p, None)
        cooldown_ms = 0
        try:
            with _Renewal(self.store, p, token, self.lease_ms):
                events = self.store.take_events(p, self.consumer)
                if not events:  # another trainer handled them meanwhile
                    return NOTHING
                upsert = {r["id"]: r for _, e in events for r in e.get("upsert", [])}
                remove = {i for _, e in events for i in e.get("remove", [])}
                syncs = [e for _, e in events if e.get("sync")]
                if syncs:  # an event without `ls_project` (an older webhook URL) reads every project
                    self.pull(p, None if any("ls_project" not in e for e in syncs)
                              else {e["ls_project"] for e in syncs})
                self.store.upsert_annotations(p, {k: v for k, v in upsert.items() if k not in remove}, remove)
                version = self.retrain(p, lease=token)
                acked = self.store.ack_events(p, [event_id for event_id, _ in events], lease=token)
                cooldown_ms = int(self.min_interval_s * 1000)
                log.info("project %s: %d events handled (%d acknowledged), model %s", p, len(events), acked,
                         version or "unchanged")
                return version
        except LeaseLost as exc:  # stalled past the lease: the project's new holder handles the events
            log.warning("%s", exc)
            return WAITING
        finally:
            self.store.release_training_lease(p, token, cooldown_ms)

    def retrain(self, p: int, lease: str | None = None) -> str | None:
        """Refit on the project's training set (its recorded policy) and publish a new version."""
        return training.retrain(self.store, self.vectors, p, lease=lease)

    def catch_up(self) -> dict[int, str | None]:
        """Read what Label Studio changed since the last read of every project, whether or not a
        webhook said so, and retrain where the training set changed: Label Studio drops the
        webhooks it cannot deliver (the backend was down, or Redis was), and a CLI sync may have
        stored labels. A project another trainer holds is left to it; a project whose Label Studio
        cannot be read now is retrained on what is stored (the next catch-up reads it again).
        Returns project -> the version published (None: nothing new)."""
        self._last_catch_up = time.monotonic()
        published = {}
        for p in self.store.project_ids():
            self.store.prune_consumers(p, PRUNE_IDLE_MS)
            token = self.store.acquire_training_lease(p, self.consumer, self.lease_ms)
            if token is None:
                continue
            try:
                with _Renewal(self.store, p, token, self.lease_ms):
                    if self.ls is not None:
                        try:
                            self.pull(p)
                        except Exception as exc:  # Label Studio away: the events that need it wait
                            log.warning("project %s: could not read Label Studio's changes (%s); "
                                        "trying again at the next catch-up", p, exc)
                    published[p] = self.retrain(p, lease=token)
            except LeaseLost as exc:
                log.warning("%s", exc)
            finally:
                self.store.release_training_lease(p, token, int(self.min_interval_s * 1000) if published.get(p) else 0)
        if any(published.values()):
            log.info("caught up: %s", {p: v for p, v in published.items() if v})
        return published

    def catch_up_due(self) -> bool:
        return time.monotonic() - self._last_catch_up >= self.catch_up_s

    def run(self) -> None:
        pending = True  # first what a previous trainer read but never acknowledged
        last_sweep = float("-inf")
        while not self.stopping.is_set():
            try:
                if pending or self.catch_up_due():  # at start, after a failure, then on the slow timer
                    self.catch_up()
                if pending or time.monotonic() - last_sweep >= self.sweep_s:  # events of a dead trainer
                    last_sweep = time.monotonic()
                    self.step(pending=True)
                if pending:
                    log.info("trainer %s caught up; reading the event streams", self.consumer)
                self.step()
                pending = False
            except Exception:  # keep serving: log, back off, retry the unacknowledged events
                log.exception("trainer step failed; retrying")
                pending = True
                time.sleep(2)


def main(argv: list[str] | None = None) -> None:
    from loop.services.context import Context
    from loop.services.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}",
                        help="This trainer's name in the consumer group and on its leases (default: host-pid).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ctx = Context(load_settings())
    trainer = Trainer(ctx.store, ctx.vectors, ls=ctx.ls, consumer=args.consumer,
                      min_interval_s=ctx.settings.trainer_min_interval, catch_up_s=ctx.settings.trainer_catch_up)

    def stop(*_: Any) -> None:
        trainer.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("trainer %s started", args.consumer)
    trainer.run()


if __name__ == "__main__":
    main()
