"""Predictions in Label Studio: push the current model's scores in bulk, prune stale versions.

Label Studio's own "retrieve predictions" action asks the ML backend task by task; pushing them
in bulk through the import API is one request per thousand tasks. Label Studio's Data Manager
averages the score column over every prediction of a task, so predictions of old model versions
are pruned to keep it meaningful.
"""

from __future__ import annotations

import time
from typing import Any

from loop.core import model as model_lib
from loop.errors import LoopError
from loop.labels.interface import prediction_row
from loop.services.context import Context

PUSH_BATCH = 1000


def push(ctx: Context, p: int, *, include_labelled: bool = False) -> dict[str, Any]:
    """Score the pool with the current model and import the predictions (idempotent per version)."""
    start = time.perf_counter()
    store, ls = ctx.store, ctx.ls
    snap = store.load_model(p)
    if snap is None:
        raise LoopError("no model yet: label items of at least two classes, then run `loop next-round` "
                        "(or let the trainer publish one)")
    clf = model_lib.restore(snap)
    items = store.items(p)
    labelled = {a["item_id"] for a in store.annotations(p).values() if a["label"] is not None}
    have = {pr["task"] for pr in ls.predictions(p) if pr.get("model_version") == snap.version}
    todo = [i for i in sorted(items) if (include_labelled or i not in labelled) and items[i]["task_id"] not in have]
    for start_row in range(0, len(todo), PUSH_BATCH):
        chunk = todo[start_row:start_row + PUSH_BATCH]
        guesses = model_lib.predict(clf, ctx.vectors.matrix(p, chunk))
        ls.import_predictions(p, [prediction_row(label, score, snap.version, task=items[i]["task_id"])
                                  for i, (label, score) in zip(chunk, guesses)])
    ls.update_project(p, model_version=snap.version)
    return {"model_version": snap.version, "pushed": len(todo), "already_there": len(have),
            "seconds": round(time.perf_counter() - start, 2)}


def prune(ctx: Context, p: int) -> dict[str, Any]:
    """Delete every prediction whose model version is not the current one."""
    start = time.perf_counter()
    current = ctx.store.current_model_version(p)
    stale = [pr["id"] for pr in ctx.ls.predictions(p) if pr.get("model_version") != current]
    for pid in stale:
        ctx.ls.delete_prediction(pid)
    return {"model_version": current, "deleted": len(stale), "seconds": round(time.perf_counter() - start, 2)}
