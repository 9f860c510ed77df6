"""Validating Label Studio webhook payloads into trainer events.

A payload that cannot be recorded raises `Refused` with an HTTP status and a reason; the app
answers with that status and keeps the payload in the dead-letter stream, so nothing is lost.
"""

from __future__ import annotations

from typing import Any

from loop.labels.interface import LABEL_CHANGES, OBJECT
from loop.services.sync import AnnotationRejected

DELETE = {"ANNOTATIONS_DELETED"}
UPSERT = set(LABEL_CHANGES) - DELETE
TRAIN = {"START_TRAINING"}


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def project_id(value: Any) -> int:
    """Label Studio sends the project as an int, a dict, or "<id>.<timestamp>"."""
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return int(str(value).split(".")[0])
    except (TypeError, ValueError):
        raise Refused(400, f"'project' is {value!r}; expected a project id") from None


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def parse(payload: dict[str, Any], recorder_for, project_hint: Any = None,
          ls_project_hint: Any = None) -> tuple[int, dict[str, Any]] | None:
    """(project id, event) for the trainer, or None for an action the trainer does not need.

    `recorder_for(p, task_ids, annotation_ids)` gives the project's Recorder for those rows, or None
    if loop does not know the project. `project_hint` is the webhook URL's `?project=` value (the
    loop project), `ls_project_hint` its `?ls_project=` (the Label Studio project the change was
    made in: the main project or an annotator's queue).

    Two shapes arrive. The webhooks loop sets up carry no payload, only the action (a payload makes
    Label Studio count the whole project inside the annotator's request); the project comes from
    the URL and the event tells the trainer to read the changed tasks itself
    ("sync"). A payload (a webhook someone set up with one, or START_TRAINING) is validated and its
    annotations recorded here, as before.
    """
    action = payload.get("action")
    if not isinstance(action, str):
        raise Refused(400, "'action' is missing; expected a Label Studio webhook event")
    if action not in UPSERT | DELETE | TRAIN:
        return None
    if not any(key in payload for key in ("project", "annotation", "annotations", "task")):
        if project_hint is None:
            raise Refused(400, f"{action} without a payload: put the project in the webhook URL "
                               "(<backend>/webhook?project=<id>; `loop init` does) or turn the payload on")
        p = project_id(project_hint)
        if recorder_for(p, [], []) is None:
            raise Refused(404, f"project {p} is not a loop project; run `loop init` for it first")
        event = {"action": action, "sync": True, "upsert": [], "remove": []}
        if ls_project_hint is not None:
            event["ls_project"] = project_id(ls_project_hint)
        return p, event
    ls_project = project_id(payload.get("project"))
    p = project_id(project_hint) if project_hint is not None else ls_project
    annotations = _as_list(payload.get("annotation"))
    tasks = {t.get("id"): t for t in _as_list(payload.get("task")) if isinstance(t, dict)}
    ann_ids = [a["id"] for a in annotations if isinstance(a, dict) and "id" in a]
    recorder = recorder_for(p, [t for t in tasks if isinstance(t, int)], ann_ids)
    if recorder is None:
        raise Refused(404, f"project {p} is not a loop project; run `loop init` for it first")
    event: dict[str, Any] = {"action": action, "upsert": [], "remove": []}
    if action in DELETE:
        event["remove"] = [str(a["id"]) for a in _as_list(payload.get("annotations"))
                           if isinstance(a, dict) and "id" in a]
        if not event["remove"]:
            raise Refused(400, f"{action} without 'annotations' ids")
        return p, event
    if action in TRAIN:
        return p, event
    if not annotations or not all(isinstance(a, dict) and "id" in a for a in annotations):
        raise Refused(400, f"{action} without an 'annotation' object with an id")
    for ann in annotations:
        task_id = ann.get("task")
        task_id = task_id.get("id") if isinstance(task_id, dict) else task_id
        task = tasks.get(task_id)
        if not isinstance(task_id, int) or task is None:
            raise Refused(400, f"annotation {ann['id']}: its task is missing from the payload")
        if not isinstance((task.get("data") or {}).get(OBJECT), str):
            raise Refused(422, f"task {task_id} has no data.{OBJECT}; loop's tasks carry their text there")
        try:
            rec = recorder.record(ann, task_id, ls_project=ls_project)
        except AnnotationRejected as exc:
            raise Refused(422, str(exc)) from None
        if rec is not None:
            event["upsert"].append(rec)
    return p, event
