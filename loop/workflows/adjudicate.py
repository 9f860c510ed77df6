"""`loop adjudicate`: send contested items (worst first) to an adjudicator, whose label is final."""

from __future__ import annotations

import time
from typing import Any

from loop.errors import ConfigError
from loop.labels.adjudication import adjudicated_labels, contested
from loop.services.context import Context
from loop.services.sync import sync_annotations


def assign(ctx: Context, p: int, adjudicator: str, limit: int | None = None) -> dict[str, Any]:
    """Send contested items (worst first) to `adjudicator` in a Label Studio view."""
    store = ctx.store
    if adjudicator not in store.annotators():
        raise ConfigError(f"unknown adjudicator {adjudicator!r}; add them with `loop annotators add {adjudicator}`")
    sync_annotations(store, ctx.ls, p)
    annotations = list(store.annotations(p).values())
    adjudication = store.adjudication(p)
    queue = contested(annotations, adjudication)
    labelled_by = {(a["item_id"], a["annotator"]) for a in annotations}
    own = [q["item_id"] for q in queue if (q["item_id"], adjudicator) in labelled_by and not q["adjudicator"]]
    todo = [q for q in queue if not q["adjudicator"] and (q["item_id"], adjudicator) not in labelled_by]
    todo = todo[:limit] if limit is not None else todo
    items = store.items(p)
    new = {q["item_id"]: {"adjudicator": adjudicator, "assigned_at": time.time()} for q in todo}
    for q in todo:  # one more annotation allowed on the task: the adjudicator's
        ctx.ls.set_overlap([items[q["item_id"]]["task_id"]], q["n_labels"] + 1)
    store.add_adjudication(p, new)
    mine = [i for i, v in store.adjudication(p).items() if v["adjudicator"] == adjudicator
            and i not in adjudicated_labels(annotations, store.adjudication(p))]
    view = ctx.ls.ensure_view(p, f"Adjudication · {adjudicator}", [items[i]["task_id"] for i in sorted(mine)]) \
        if mine else None
    return {"adjudicator": adjudicator, "assigned": [q["item_id"] for q in todo], "open_for_adjudicator": len(mine),
            "view": view, "contested": len(queue), "skipped_own_items": own, "queue": queue}
