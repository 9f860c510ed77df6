"""The one path from Label Studio into the label store: annotations become loop's label records.

`Recorder` turns one annotation into a record (validated, attributed, stamped with the guideline
version); `pull_changes` mirrors the tasks Label Studio changed since the last read (the trainer's
path, and the CLI's after the first read); `sync_annotations` is the CLI's full sync built on it,
checked against Label Studio's own count. The ML backend's webhooks record payloads through the
same `Recorder`, so every path stores the same shape and validates the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from loop.errors import LoopError
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

    @classmethod
    def load(cls, store: Store, p: int, *, task_ids=None, annotation_ids=None) -> "Recorder":
        """Everything for a full sync; with task and annotation ids (a webhook), only those rows,
        so a webhook costs the same at 1k and at 100k labels."""
        if task_ids is None:
            return cls(project=store.project(p) or {}, item_of_task=store.item_for_task(p),
                       name_of_user={a["ls_user_id"]: a["name"] for a in store.annotators().values()},
                       stored=store.annotations(p))
        return cls(project=store.project(p) or {}, item_of_task=store.items_for_tasks(p, task_ids),
                   name_of_user={a["ls_user_id"]: a["name"] for a in store.annotators().values()},
                   stored=store.annotations_by_id(p, annotation_ids or []))

    def record(self, ann: dict[str, Any], task_id: int) -> dict[str, Any] | None:
        """The label record for one annotation; None when it carries no label for an item of ours.

        Raises AnnotationRejected for a label outside the project's label set. A new annotation is
        stamped with the guideline version in force; an updated one keeps its first stamp.
        """
        if task_id not in self.item_of_task:
            return None  # a task loop did not import (added by hand in Label Studio): not ours to track
        by = ann.get("completed_by")
        by = by.get("id") if isinstance(by, dict) else by
        who = self.name_of_user.get(by, f"user-{by}")
        skipped = bool(ann.get("was_cancelled"))
        label = result_label(ann.get("result") or [])
        if not skipped and label is None:
            return None  # an empty submission carries no label
        labels = self.project.get("labels") or []
        if label is not None and label not in labels:
            raise AnnotationRejected(f"annotation {ann.get('id')} by {who} on task {task_id} has label {label!r}, "
                                     f"which is not one of {', '.join(sorted(labels))}; fix it in Label Studio")
        aid = str(ann["id"])
        return {
            "id": aid, "item_id": self.item_of_task[task_id], "task_id": task_id, "annotator": who,
            "ls_user_id": by, "label": None if skipped else label, "skipped": skipped,
            "created_at": ann.get("created_at"), "updated_at": ann.get("updated_at"),
            # Stamped once, when loop first sees the label: the guidelines in force when it was made.
            "guideline_version": (self.stored.get(aid) or {}).get("guideline_version",
                                                                  self.project.get("guideline_version")),
            "guideline_hash": (self.stored.get(aid) or {}).get("guideline_hash", self.project.get("guideline_hash")),
        }


def _stamp_minus(stamp: str, seconds: float) -> str:
    """A Label Studio timestamp moved back by `seconds`, in the format its filters accept."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    moment = datetime.strptime(stamp if "." in stamp else stamp.replace("Z", ".000000Z"), fmt)
    return (moment - timedelta(seconds=seconds)).strftime(fmt)


# Tasks changed this long before the newest one read are read again: re-reading is harmless
# (idempotent), and it covers two saves that land in the same instant on either side of a read.
OVERLAP_S = 1.0


def pull_changes(store: Store, ls, p: int, on_reject=None, strict: bool = False) -> dict[str, int]:
    """Mirror into Redis the annotations of every task Label Studio changed since the last pull.

    The first pull (no mark in Redis yet) reads every labelled task through the export, once; later
    pulls ask only for tasks whose `updated_at` is newer than the mark. A task's stored annotations
    are replaced by what Label Studio has now, so deletions are seen too. An annotation that cannot
    be recorded (a label outside the label set) is left out and handed to `on_reject(annotation,
    reason)`; the rest are recorded. With `strict`, such an annotation raises AnnotationRejected
    instead, before anything is written (the CLI's sync: an operator fixes it in Label Studio).
    Returns counts: tasks read, annotations added, updated and removed, annotations rejected.
    """
    mark = store.synced_at(p)
    if mark is None:
        tasks = [{"id": int(t["id"]), "updated_at": t.get("updated_at"), "annotations": t.get("annotations") or []}
                 for t in ls.export_tasks(p)]
    else:
        tasks = ls.changed_tasks(p, after=_stamp_minus(mark, OVERLAP_S))
    if not tasks:
        return {"tasks": 0, "added": 0, "updated": 0, "removed": 0, "rejected": 0}
    recorder = Recorder.load(store, p, task_ids=[t["id"] for t in tasks],
                             annotation_ids=[a["id"] for t in tasks for a in t["annotations"] if "id" in a])
    fresh: dict[str, dict[str, Any]] = {}
    rejected_ids: set[str] = set()
    for task in tasks:
        for ann in task["annotations"]:
            try:
                rec = recorder.record(ann, task["id"])
            except AnnotationRejected as exc:
                if strict:
                    raise
                rejected_ids.add(str(ann.get("id")))
                if on_reject is not None:
                    on_reject(ann, str(exc))
                continue
            if rec is not None:
                fresh[rec["id"]] = rec
    # Another writer (the CLI's full sync) may have stored something newer than this read saw:
    # never overwrite a newer record, nor remove one the read's snapshot of its task predates.
    stored = store.annotations(p)
    seen_at = {t["id"]: t.get("updated_at") or "" for t in tasks}
    fresh = {aid: rec for aid, rec in fresh.items()
             if (rec.get("updated_at") or "") >= ((stored.get(aid) or {}).get("updated_at") or "")}
    listed = {str(a["id"]) for t in tasks for a in t["annotations"] if "id" in a}
    stale = [aid for aid, a in stored.items() if a.get("task_id") in seen_at and aid not in fresh
             and (aid in rejected_ids or (aid not in listed and seen_at[a["task_id"]] >= (a.get("updated_at") or "")))]
    changed = {aid: rec for aid, rec in fresh.items() if stored.get(aid) != rec}
    store.upsert_annotations(p, changed, stale)
    newest = max((t["updated_at"] for t in tasks if t.get("updated_at")), default=None)
    if newest is not None and (mark is None or newest > mark):
        store.set_synced_at(p, newest)
    return {"tasks": len(tasks), "added": sum(1 for aid in changed if aid not in stored),
            "updated": sum(1 for aid in changed if aid in stored), "removed": len(stale),
            "rejected": len(rejected_ids)}


def sync_annotations(store: Store, ls: LabelStudioClient, p: int) -> dict[str, int]:
    """Mirror the project's annotations from Label Studio into Redis (idempotent); returns counts of
    annotations added, updated and removed.

    Every annotation is validated first (a label from the project's label set), so a bad one fails
    the sync with nothing written. After a first full read (Label Studio's export: about 3 s per
    1,000 labelled tasks), only the tasks Label Studio changed since the last read are fetched
    (`pull_changes`, shared with the trainer), then the stored count is checked against Label
    Studio's own; on any difference (a task deleted with its annotations, say) the full read runs.
    """
    if store.synced_at(p) is not None:
        counts = pull_changes(store, ls, p, strict=True)
        if ls.annotation_count(p) == store.annotation_count(p):
            return {k: counts[k] for k in ("added", "updated", "removed")}
    tasks = ls.export_tasks(p)
    recorder = Recorder.load(store, p)
    fresh: dict[str, dict[str, Any]] = {}
    for task in tasks:
        for ann in task.get("annotations") or []:
            rec = recorder.record(ann, int(task["id"]))
            if rec is not None:
                fresh[rec["id"]] = rec
    counts = store.replace_annotations(p, fresh)
    newest = max((t["updated_at"] for t in tasks if t.get("updated_at")), default=None)
    if newest is not None:
        store.set_synced_at(p, newest)
    return counts
