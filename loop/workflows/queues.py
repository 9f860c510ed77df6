"""Annotators' queues: one Label Studio project per annotator, holding only the items sent to them.

Open-source Label Studio has no task assignment: its labelling stream ("Label All Tasks") serves any
task of the project, and its Data Manager shows every annotation of a task to everyone. So the
items `next-round` (or `adjudicate`) sends to an annotator are imported as tasks into a project of
their own, "<project> · <annotator>": their stream serves exactly their items, one annotation per
task, and no one else's label is on them. The main project keeps every item for operators (and
the model's scores). Nothing is pre-ticked: a queue shows the model's answer only when the project
was set up for assisted labelling (`loop init --assisted`, one annotator per item).

Each step is idempotent, so a re-run after a crash finishes the job: the queue is found by its
title, and tasks already in it are found by their item id before anything is imported again.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from loop.errors import DataError
from loop.labels.interface import LABEL_CHANGES, QUEUE_TAB, QUEUE_TAB_HIDDEN
from loop.services.context import Context
from loop.workflows.texts import project_texts


def queue_title(project_title: str, annotator: str) -> str:
    return f"{project_title} · {annotator}"


def ensure_queue(ctx: Context, p: int, annotator: str) -> int:
    """The Label Studio project of `annotator`'s queue in loop project p, created on first use
    with the project's labels, instructions and webhook."""
    store = ctx.store
    known = store.queues(p).get(annotator)
    if known:
        return int(known["ls_project"])
    project = store.project(p) or {}
    q = queue_project(ctx, p, annotator, QUEUE_TAB, suggestions=bool(project.get("assisted")))
    store.add_queue(p, annotator, q)
    return q


def queue_project(ctx: Context, p: int, name: str, tab: str, *, suggestions: bool = False) -> int:
    """The Label Studio project "<project> · <name>" (found by title, else created) with the project's
    labels and instructions, its webhook, and a tab `tab` that hides others' labels and predictions."""
    ls = ctx.ls
    project = ctx.store.project(p) or {}
    main = ls.project(p)
    title = queue_title(main.get("title") or f"loop project {p}", name)
    q = ls.find_project(title)  # made by a run that died before recording it
    if q is None:
        q = ls.create_project(title, project["labels"], main.get("expert_instruction") or "",
                              suggestions=suggestions, sampling="Sequential sampling")
    ls.ensure_webhook(q, f"{ctx.settings.backend_url}/webhook", LABEL_CHANGES, auth=ctx.workspace.backend_login(),
                      loop_project=p)
    ls.ensure_view(q, tab, hidden_columns=QUEUE_TAB_HIDDEN)
    return q


def enqueue(ctx: Context, p: int, annotator: str, item_ids: Sequence[str], *,
            round: int | None = None) -> dict[str, Any]:
    """Put items in an annotator's queue (those not there yet); returns {ls_project, url, tasks}
    with the queue's task id of every item asked for."""
    store = ctx.store
    q = ensure_queue(ctx, p, annotator)
    have = store.queue_tasks(p, annotator)
    todo = [i for i in item_ids if i not in have]
    have |= import_missing(ctx, p, q, todo, lambda tasks: store.add_queue_tasks(p, annotator, tasks),
                           f"items for {annotator}", {"round": round} if round is not None else {})
    return {"ls_project": q, "url": f"{ctx.settings.ls_url}/projects/{q}/data",
            "tasks": [have[i] for i in item_ids]}


def import_missing(ctx: Context, p: int, q: int, todo: Sequence[str], record: Callable[[dict[str, int]], None],
                   what: str, fields: dict[str, Any] | None = None) -> dict[str, int]:
    """Import items `todo` (text only, plus `fields`) as tasks of Label Studio project q, recording
    item id -> task id with `record` as they become known; returns that mapping. Tasks a crashed
    run imported but never recorded are taken as they are, so a re-run never imports twice."""
    if not todo:
        return {}
    orphans = {i: t for i, t in ctx.ls.task_item_ids(q).items() if i in set(todo)}
    record(orphans)
    todo = [i for i in todo if i not in orphans]
    if not todo:
        return orphans
    texts, _ = project_texts(ctx, p, ctx.store.project(p) or {}, todo)
    missing = [i for i in todo if i not in texts]
    if missing:
        raise DataError(f"{len(missing)} {what} (e.g. {missing[0]!r}) have no text; "
                        "re-run `loop init` on the project's data file")
    imported = dict(zip(todo, ctx.ls.import_tasks(q, [{"text": texts[i], "item_id": i, **(fields or {})}
                                                      for i in todo])))
    record(imported)
    return orphans | imported


def withdraw(ctx: Context, p: int, annotator: str, item_ids: Sequence[str]) -> int:
    """Take items out of an annotator's queue (a closed round released them: nobody labelled them);
    their stream no longer serves them. Returns how many tasks went. Idempotent."""
    in_queue = ctx.store.queue_tasks(p, annotator)
    for item in item_ids:
        if item in in_queue:
            ctx.ls.delete_task(in_queue[item])
    return len(ctx.store.remove_queue_tasks(p, annotator, item_ids))


def queue_projects(store, p: int) -> dict[str, int]:
    """annotator -> the Label Studio project of their queue."""
    return {name: int(q["ls_project"]) for name, q in store.queues(p).items()}
