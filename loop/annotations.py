"""Turning Label Studio annotations into loop's label records: one place for the CLI's sync and
the ML backend's webhooks, so both store the same shape and validate the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loop.errors import LoopError
from loop.labelstudio import result_label
from loop.store import Store


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
