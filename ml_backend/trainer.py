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
A new model is written under a new version and made current in one transaction; `/predict` picks
it up on its next request. Events are acknowledged only after that, so a trainer that dies
mid-batch re-reads them on restart.

Run it with `python -m ml_backend.trainer` (`loop up` does).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Any

from loop.services.store import Store
from loop.services.sync import pull_changes
from loop.services.vectors import ItemVectors
from loop.workflows import training

log = logging.getLogger("loop.trainer")
CATCH_UP_S = 60.0  # the slow timer: a missed webhook costs at most this long


class Trainer:
    def __init__(self, store: Store, vectors: ItemVectors, *, ls=None, consumer: str = "trainer-1",
                 coalesce_s: float = 0.3, block_ms: int = 1000, min_interval_s: float = 0.0,
                 catch_up_s: float = CATCH_UP_S):
        """`min_interval_s`: at least this long between two retrains; events arriving meanwhile
        join the next one (one model version for a stretch of submits, not one per submit).
        `catch_up_s`: how often the trainer reads Label Studio's changes without being told
        (`catch_up`), besides once when it starts."""
        self.store, self.vectors, self.ls = store, vectors, ls
        self.consumer, self.coalesce_s, self.block_ms = consumer, coalesce_s, block_ms
        self.min_interval_s, self.catch_up_s = min_interval_s, catch_up_s
        self._last_retrain = float("-inf")
        self._last_catch_up = float("-inf")
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
        """Handle one burst of events; returns project -> new model version (None: no model yet)."""
        self.store.heartbeat()
        batch = self.store.read_events(self.consumer, block_ms=self.block_ms, pending=pending)
        if not batch:
            return {}
        if not pending:  # coalesce: a burst of annotations is one retrain, and retrains keep their distance
            time.sleep(max(self.coalesce_s, self._last_retrain + self.min_interval_s - time.monotonic()))
            for p, more in self.store.read_events(self.consumer, block_ms=1, count=100_000).items():
                batch.setdefault(p, []).extend(more)
        published = {}
        for p, events in batch.items():
            upsert = {r["id"]: r for _, e in events for r in e.get("upsert", [])}
            remove = {i for _, e in events for i in e.get("remove", [])}
            syncs = [e for _, e in events if e.get("sync")]
            if syncs:  # an event without `ls_project` (an older webhook URL) reads every project
                self.pull(p, None if any("ls_project" not in e for e in syncs) else {e["ls_project"] for e in syncs})
            self.store.upsert_annotations(p, {k: v for k, v in upsert.items() if k not in remove}, remove)
            published[p] = self.retrain(p)
            self.store.ack_events(p, [event_id for event_id, _ in events])
        self._last_retrain = time.monotonic()
        return published

    def retrain(self, p: int) -> str | None:
        """Refit on the project's training set (its recorded policy) and publish a new version."""
        return training.retrain(self.store, self.vectors, p)

    def catch_up(self) -> dict[int, str | None]:
        """Read what Label Studio changed since the last read of every project, whether or not a
        webhook said so, and retrain where the training set changed: Label Studio drops the
        webhooks it cannot deliver (the backend was down, or Redis was), and a CLI sync may have
        stored labels. Returns project -> the version published (None: nothing new)."""
        self._last_catch_up = time.monotonic()
        published = {}
        for p in self.store.project_ids():
            if self.ls is not None:
                self.pull(p)
            published[p] = self.retrain(p)
        if any(published.values()):
            log.info("caught up: %s", {p: v for p, v in published.items() if v})
        return published

    def catch_up_due(self) -> bool:
        return time.monotonic() - self._last_catch_up >= self.catch_up_s

    def run(self) -> None:
        pending = True  # first what a previous trainer read but never acknowledged
        while not self.stopping.is_set():
            try:
                if pending or self.catch_up_due():  # at start, after a failure, then on the slow timer
                    self.catch_up()
                self.step(pending=pending)
                pending = False
            except Exception:  # keep serving: log, back off, retry the unacknowledged events
                log.exception("trainer step failed; retrying")
                pending = True
                time.sleep(2)


def main(argv: list[str] | None = None) -> None:
    from loop.services.context import Context
    from loop.services.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumer", default="trainer-1", help="Consumer name inside the group.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ctx = Context(load_settings())
    trainer = Trainer(ctx.store, ctx.vectors, ls=ctx.ls, consumer=args.consumer,
                      min_interval_s=ctx.settings.trainer_min_interval, catch_up_s=ctx.settings.trainer_catch_up)

    def stop(*_: Any) -> None:
        trainer.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("trainer started")
    trainer.run()


if __name__ == "__main__":
    main()
