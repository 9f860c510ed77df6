"""The one path from Label Studio into the label store: annotations become loop's label records.

A loop project lives in several Label Studio projects: the main one (every item, for operators)
and one queue per annotator (only the items sent to them, `workflows.queues`). Task ids are unique
across Label Studio, so one task map finds the item of any task.

`Recorder` turns one annotation into a record (validated, attributed to who last wrote it, stamped
with the guideline version, whether a suggestion was shown); `pull_changes` mirrors the tasks Label
Studio changed since the last read of each of those projects (the trainer's path, and the CLI's
after the first read); `sync_annotations` is the CLI's sync built on it, checked against Label
Studio's own counts. The ML backend's webhooks record payloads through the same `Recorder`, so
every path stores the same shape and validates the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loop.errors import LoopError
from loop.labels.attribution import audit_queue
from loop.labels.interface import result_label
from loop.services.labelstudio import LabelStudioClient
from loop.services.store import Store


class AnnotationRejected(LoopError):
    """An annotation loop cannot record (unknown task, a label outside the label set)."""


@dataclass
class Recorder:
    """What it takes to validate and stamp annotations of one project, read once from Redis."""

    project: dict[str, Any]
    item_of_task: dict[int, str]
    name_of_user: dict[int, str]
    stored: dict[str, dict[str, Any]]
    queue_of: dict[int, str] = field(default_factory=dict)  # queue's Label Studio project -> its annotator

    @classmethod
    def load(cls, store: Store, p: int, *, task_ids=None, annotation_ids=None) -> "Recorder":
        """Everything for a full sync; with task and annotation ids (a webhook), only those rows,
        so a webhook costs the same at 1k and at 100k labels."""
        names = {a["ls_user_id"]: a["name"] for a in store.annotators().values()}
        queue_of = {q["ls_project"]: name for name, q in store.queues(p).items()}
        queue_of |= {ls_project: audit_queue(n) for ls_project, n in store.audit_projects(p).items()}
        if task_ids is None:
            return cls(project=store.project(p) or {}, item_of_task=store.item_for_task(p), name_of_user=names,
                       stored=store.annotations(p), queue_of=queue_of)
        return cls(project=store.project(p) or {}, item_of_task=store.items_for_tasks(p, task_ids),
                   name_of_user=names, stored=store.annotations_by_id(p, annotation_ids or []), queue_of=queue_of)

    def _name(self, user: Any) -> str | None:
        user = user.get("id") if isinstance(user, dict) else user
        return None if user is None else self.name_of_user.get(user, f"user-{user}")

    def record(self, ann: dict[str, Any], task_id: int, ls_project: int | None = None) -> dict[str, Any] | None:
        """The label record for one annotation; None when it carries no label for an item of ours.

        The label belongs to whoever last wrote it: Label Studio's `updated_by` when someone edited
        another's annotation (`created_by` keeps who started it), else `completed_by`. Raises
        AnnotationRejected for a label outside the project's label set. A new annotation is stamped
        with the guideline version in force; an updated one keeps its first stamp.
        """
        if task_id not in self.item_of_task:
            return None  # a task loop did not import (added by hand in Label Studio): not ours to track
        by = ann.get("completed_by")
        by = by.get("id") if isinstance(by, dict) else by
        creator = self._name(by)
        who = self._name(ann.get("updated_by")) or creator
        skipped = bool(ann.get("was_cancelled"))
        label = result_label(ann.get("result") or [])
        if not skipped and label is None:
            return None  # an empty submission carries no label
        labels = self.project.get("labels") or []
        if label is not None and label not in labels:
            raise AnnotationRejected(f"annotation {ann.get('id')} by {who} on task {task_id} has label {label!r}, "
                                     f"which is not one of {', '.join(sorted(labels))}; fix it in Label Studio")
        aid = str(ann["id"])
        first = self.stored.get(aid) or {}
        return {
            "id": aid, "item_id": self.item_of_task[task_id], "task_id": task_id, "annotator": who,
            "ls_user_id": by, "created_by": creator, "edited_by_other": who != creator,
            "label": None if skipped else label, "skipped": skipped,
            "created_at": ann.get("created_at"), "updated_at": ann.get("updated_at"),
            "ls_project": ls_project, "queue": self.queue_of.get(ls_project),
            # The annotation started from a prediction: the annotator was shown the model's answer.
            "suggested": ann.get("parent_prediction") is not None,
            # Stamped once, when loop first sees the label: the guidelines in force when it was made.
            "guideline_version": first.get("guideline_version", self.project.get("guideline_version")),
            "guideline_hash": first.get("guideline_hash", self.project.get("guideline_hash")),
        }


def _stamp_minus(stamp: str, seconds: float) -> str:
    """A Label Studio timestamp moved back by `seconds`, in the format its filters accept."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    moment = datetime.strptime(stamp if "." in stamp else stamp.replace("Z", ".000000Z"), fmt)
    return (moment - timedelta(seconds=seconds)).strftime(fmt)


# Tasks changed this long before the newest one read are read again: re-reading is harmless
# (idempotent), and it covers two saves that land in the same instant on either side of a read.
OVERLAP_S = 1.0
NO_CHANGE = {"tasks": 0, "added": 0, "updated": 0, "removed": 0, "rejected": 0}


def ls_projects(store: Store, p: int) -> list[int]:
    """Every Label Studio project of loop project p: the main one, then the annotators' queues and
    the audit queues."""
    return [p] + sorted([q["ls_project"] for q in store.queues(p).values()] + list(store.audit_projects(p)))


@dataclass
class _Read:
    """What one read of one Label Studio project found, validated, before anything is written."""

    ls_project: int
    mark: str | None
    tasks: list[dict[str, Any]]
    fresh: dict[str, dict[str, Any]]
    rejected: set[str]
    newest: str | None = None  # the newest task stamp when the read found no labelled task


def _read(store: Store, ls, p: int, lp: int, *, export: bool, strict: bool, on_reject=None) -> _Read:
    mark = store.synced_at(p, lp)
    if export or mark is None:
        tasks = [{"id": int(t["id"]), "updated_at": t.get("updated_at"), "annotations": t.get("annotations") or []}
                 for t in ls.export_tasks(lp)]
    else:
        tasks = ls.changed_tasks(lp, after=_stamp_minus(mark, OVERLAP_S))
    fresh: dict[str, dict[str, Any]] = {}
    rejected: set[str] = set()
    if not tasks:
        # Nothing labelled yet: start the next read at the newest task, not with another export.
        return _Read(lp, mark, tasks, fresh, rejected, newest=ls.newest_task_stamp(lp) if mark is None else None)
    recorder = Recorder.load(store, p, task_ids=[t["id"] for t in tasks],
                             annotation_ids=[a["id"] for t in tasks for a in t["annotations"] if "id" in a])
    for task in tasks:
        for ann in task["annotations"]:
            try:
                rec = recorder.record(ann, task["id"], ls_project=lp)
            except AnnotationRejected as exc:
                if strict:
                    raise
                rejected.add(str(ann.get("id")))
                if on_reject is not None:
                    on_reject(ann, str(exc))
                continue
            if rec is not None:
                fresh[rec["id"]] = rec
    return _Read(lp, mark, tasks, fresh, rejected)


def _mark(store: Store, p: int, read: _Read) -> None:
    newest = max((t["updated_at"] for t in read.tasks if t.get("updated_at")), default=read.newest)
    if newest is not None and (read.mark is None or newest > read.mark):
        store.set_synced_at(p, newest, read.ls_project)


def _merge(store: Store, p: int, read: _Read) -> dict[str, int]:
    """Write a read, never undoing a newer write: another writer (the CLI's sync) may have stored
    something newer than this read saw, so a newer record is not overwritten, nor is one removed
    that the read's snapshot of its task predates."""
    if not read.tasks:
        _mark(store, p, read)
        return dict(NO_CHANGE)
    stored = store.annotations(p)
    seen_at = {t["id"]: t.get("updated_at") or "" for t in read.tasks}
    fresh = {aid: rec for aid, rec in read.fresh.items()
             if (rec.get("updated_at") or "") >= ((stored.get(aid) or {}).get("updated_at") or "")}
    listed = {str(a["id"]) for t in read.tasks for a in t["annotations"] if "id" in a}
    stale = [aid for aid, a in stored.items() if a.get("task_id") in seen_at and aid not in fresh
             and (aid in read.rejected
                  or (aid not in listed and seen_at[a["task_id"]] >= (a.get("updated_at") or "")))]
    changed = {aid: rec for aid, rec in fresh.items() if stored.get(aid) != rec}
    store.upsert_annotations(p, changed, stale)
    _mark(store, p, read)
    return {"tasks": len(read.tasks), "added": sum(1 for aid in changed if aid not in stored),
            "updated": sum(1 for aid in changed if aid in stored), "removed": len(stale),
            "rejected": len(read.rejected)}


def _replace(store: Store, p: int, read: _Read) -> dict[str, int]:
    """Write a full read (an export) of one Label Studio project: its stored annotations become exactly these."""
    counts = store.replace_annotations(p, read.fresh, ls_project=read.ls_project)
    _mark(store, p, read)
    return {"tasks": len(read.tasks), **counts, "rejected": 0}


def _add(total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + counts.get(k, 0) for k in NO_CHANGE}


def pull_changes(store: Store, ls, p: int, on_reject=None, strict: bool = False,
                 ls_project: int | None = None) -> dict[str, int]:
    """Mirror into Redis the annotations of every task Label Studio changed since the last pull, in
    each of project p's Label Studio projects (or only `ls_project`).

    The first pull of a Label Studio project (no mark in Redis yet) reads every labelled task
    through the export, once; later pulls ask only for tasks whose `updated_at` is newer than its
    mark. A task's stored annotations are replaced by what Label Studio has now, so deletions are
    seen too. An annotation that cannot be recorded (a label outside the label set) is left out and
    handed to `on_reject(annotation, reason)`; the rest are recorded. With `strict`, such an
    annotation raises AnnotationRejected instead, before anything is written (the CLI's sync: an
    operator fixes it in Label Studio). Returns counts: tasks read, annotations added, updated and
    removed, annotations rejected.
    """
    targets = [ls_project] if ls_project is not None else ls_projects(store, p)
    reads = [_read(store, ls, p, lp, export=False, strict=strict, on_reject=on_reject) for lp in targets]
    total = dict(NO_CHANGE)
    for read in reads:
        total = _add(total, _merge(store, p, read))
    return total


def sync_annotations(store: Store, ls: LabelStudioClient, p: int) -> dict[str, int]:
    """Mirror the project's annotations from Label Studio into Redis (idempotent); returns counts of
    annotations added, updated and removed.

    Every annotation of every Label Studio project of p is read and validated first (a label from
    the project's label set), so a bad one fails the sync with nothing written. After a first full
    read of a Label Studio project (its export: about 3 s per 1,000 labelled tasks), only the tasks
    it changed since the last read are fetched (as the trainer's `pull_changes`), then the stored
    count is checked against Label Studio's own; on any difference (a task deleted with its
    annotations, say) that project is read in full again.
    """
    reads = [_read(store, ls, p, lp, export=store.synced_at(p, lp) is None, strict=True)
             for lp in ls_projects(store, p)]
    total = dict(NO_CHANGE)
    for read in reads:
        if read.mark is None:
            total = _add(total, _replace(store, p, read))
            continue
        total = _add(total, _merge(store, p, read))
        if ls.annotation_count(read.ls_project) != store.annotation_count(p, read.ls_project):
            full = _read(store, ls, p, read.ls_project, export=True, strict=True)
            total = _add(total, _replace(store, p, full))
    if total["added"] or total["updated"] or total["removed"]:
        # Labels the trainer has not seen (its webhooks were lost): have it retrain on them.
        store.append_event(p, {"action": "SYNCED", "retrain": True})
    return {k: total[k] for k in ("added", "updated", "removed")}
