"""Predictions in Label Studio: push the current model's scores in bulk, prune stale versions.

Label Studio's own "retrieve predictions" action asks the ML backend task by task; pushing them
in bulk through the import API is one request per thousand tasks. Label Studio's Data Manager
averages the score column over every prediction of a task, so a task keeps one prediction: the
current model's replaces older ones (`replace_predictions`, used by rounds and pushes alike), and
`prune` removes the rest.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from loop.core import model as model_lib
from loop.errors import LoopError
from loop.labels.interface import prediction_row
from loop.services import ray_engine
from loop.services.context import Context
from loop.workflows.training import labels_that_count

PUSH_BATCH = 1000


def push(ctx: Context, p: int, *, include_labelled: bool = False, engine: str | None = None) -> dict[str, Any]:
    """Score the pool with the current model and import the predictions (idempotent per version).
    `engine`: where the pool is scored, `local` or `ray` (`services.ray_engine`); None: `ray` when
    LOOP_RAY_ADDRESS is set."""
    start = time.perf_counter()
    scored = ray_engine.scorer(ctx.settings, engine)
    store, ls = ctx.store, ctx.ls
    snap = store.load_model(p)
    if snap is None:
        raise LoopError("no model yet: label items of at least two classes, then run `loop next-round` "
                        "(or let the trainer publish one)")
    clf = scored(model_lib.restore(snap))
    items = store.items(p)
    counted, _ = labels_that_count(store, p)
    labelled = {a["item_id"] for a in counted if a["label"] is not None}
    existing = ls.predictions(p)
    have = {pr["task"] for pr in existing if pr.get("model_version") == snap.version}
    todo = [i for i in sorted(items) if (include_labelled or i not in labelled) and items[i]["task_id"] not in have]
    guesses = []
    for start_row in range(0, len(todo), PUSH_BATCH):
        chunk = todo[start_row:start_row + PUSH_BATCH]
        guesses += [(items[i]["task_id"], label, score)
                    for i, (label, score) in zip(chunk, model_lib.predict(clf, ctx.vectors.matrix(p, chunk)))]
    done = replace_predictions(ctx, p, guesses, snap.version, existing=existing)
    return {"model_version": snap.version, "pushed": done["imported"], "already_there": len(have),
            "replaced": done["replaced"], "seconds": round(time.perf_counter() - start, 2)}


def replace_predictions(ctx: Context, ls_project: int, guesses: Sequence[tuple[int, str, float]], version: str, *,
                        existing: list[dict] | None = None) -> dict[str, int]:
    """Give each task in `guesses` ((task id, label, score)) `version`'s prediction, a thousand per
    request, and delete its predictions of other versions: one current prediction per task.
    `existing`: the project's predictions, when the caller has listed them already."""
    ls = ctx.ls
    existing = ls.predictions(ls_project) if existing is None else existing
    have = {pr["task"] for pr in existing if pr.get("model_version") == version}
    rows = [prediction_row(label, score, version, task=task) for task, label, score in guesses if task not in have]
    for start_row in range(0, len(rows), PUSH_BATCH):
        ls.import_predictions(ls_project, rows[start_row:start_row + PUSH_BATCH])
    tasks = {task for task, _, _ in guesses}
    stale = [pr["id"] for pr in existing if pr["task"] in tasks and pr.get("model_version") != version]
    for pid in stale:
        ls.delete_prediction(pid)
    ls.update_project(ls_project, model_version=version)
    return {"imported": len(rows), "replaced": len(stale)}


def prune(ctx: Context, p: int) -> dict[str, Any]:
    """Delete every prediction whose model version is not the current one."""
    start = time.perf_counter()
    current = ctx.store.current_model_version(p)
    stale = [pr["id"] for pr in ctx.ls.predictions(p) if pr.get("model_version") != current]
    for pid in stale:
        ctx.ls.delete_prediction(pid)
    return {"model_version": current, "deleted": len(stale), "seconds": round(time.perf_counter() - start, 2)}
