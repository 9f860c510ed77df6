"""`loop adjudicate`: send contested items (worst first) to an adjudicator, whose label is final."""

from __future__ import annotations

import time
from typing import Any

from loop.errors import ConfigError
from loop.labels.adjudication import adjudicated_labels, contested
from loop.labels.audit import disputes
from loop.services.context import Context
from loop.services.sync import sync_annotations
from loop.workflows.queues import enqueue
from loop.workflows.training import labels_that_count, without_gold


def assign(ctx: Context, p: int, adjudicator: str, limit: int | None = None) -> dict[str, Any]:
    """Send contested items (worst first) to `adjudicator`'s queue (`workflows.queues`)."""
    store = ctx.store
    if adjudicator not in store.annotators():
        raise ConfigError(f"unknown adjudicator {adjudicator!r}; add them with `loop annotators add {adjudicator}`")
    sync_annotations(store, ctx.ls, p)
    annotations, _ = labels_that_count(store, p)
    adjudication = store.adjudication(p)
    # A gold item's label is settled (it is the trusted one): never contested.
    queue = contested(without_gold(store, p, annotations), adjudication, disputes(store.audits(p)))
    # An auditor who disputed an item is a party to it, like its annotators: not its judge.
    labelled_by = {(a["item_id"], a["annotator"]) for a in annotations} | {
        (q["item_id"], who) for q in queue for who in q["auditors"]}
    own = [q["item_id"] for q in queue if (q["item_id"], adjudicator) in labelled_by and not q["adjudicator"]]
    todo = [q for q in queue if not q["adjudicator"] and (q["item_id"], adjudicator) not in labelled_by]
    todo = todo[:limit] if limit is not None else todo
    store.add_adjudication(p, {q["item_id"]: {"adjudicator": adjudicator, "assigned_at": time.time()} for q in todo})
    mine = [i for i, v in store.adjudication(p).items() if v["adjudicator"] == adjudicator
            and i not in adjudicated_labels(annotations, store.adjudication(p))]
    sent = enqueue(ctx, p, adjudicator, sorted(mine)) if mine else None
    return {"adjudicator": adjudicator, "assigned": [q["item_id"] for q in todo], "open_for_adjudicator": len(mine),
            "ls_project": sent and sent["ls_project"], "url": sent and sent["url"], "tasks": sent and sent["tasks"],
            "contested": len(queue), "skipped_own_items": own, "queue": queue}


def accept(ctx: Context, p: int, annotation_ids: list[str], *, every: bool = False) -> dict[str, Any]:
    """Take labels left out of training (their author was not sent the item) into training: the
    given annotation ids, or with `every` all of them. An id that is not left out is an error."""
    store = ctx.store
    sync_annotations(store, ctx.ls, p)
    _, outside = labels_that_count(store, p)
    left_out = {str(o["id"]): o for o in outside}
    if every == bool(annotation_ids):
        raise ConfigError("give the annotation ids to accept (`loop status --json` lists them under "
                          "labels_outside), or --all, not both")
    ids = sorted(left_out) if every else [str(i) for i in annotation_ids]
    unknown = [i for i in ids if i not in left_out]
    if unknown:
        raise ConfigError(f"annotation {unknown[0]} is not a label left out of training "
                          f"({len(left_out)} are; `loop status --json` lists them under labels_outside)")
    store.accept(p, ids)
    return {"accepted": [left_out[i] for i in ids], "still_outside": len(left_out) - len(ids)}
