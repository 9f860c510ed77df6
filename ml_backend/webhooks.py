"""Label Studio webhook payloads into trainer events.

A webhook is a signal, never a source of labels: whatever a body says about an annotation, the
trainer reads the changed tasks from Label Studio itself (`loop.services.sync.pull_changes`), so a
forged body can at most make it read Label Studio once more. The webhooks loop sets up carry no
payload at all (a payload makes Label Studio count the whole project inside the annotator's
request); their URL names the loop project (`?project=`) and the Label Studio project the change
was made in (`?ls_project=`: the main project or an annotator's queue).

A payload that cannot be taken raises `Refused` with an HTTP status and a reason; the app answers
with that status and keeps an excerpt of the payload in the dead-letter stream.
"""

from __future__ import annotations

from typing import Any, Callable

from loop.labels.interface import LABEL_CHANGES

CHANGES = set(LABEL_CHANGES)
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


def parse(payload: dict[str, Any], is_project: Callable[[int], bool], project_hint: Any = None,
          ls_project_hint: Any = None) -> tuple[int, dict[str, Any]] | None:
    """(loop project id, event) for the trainer, or None for an action the trainer does not need.

    `is_project(p)` says whether p is a loop project. The loop project comes from the URL's
    `?project=` (`project_hint`), else from the payload's project (a webhook someone set up on a
    main project by hand); the Label Studio project from `?ls_project=`, else the payload's.
    A label change becomes {"sync": True}: read the changed tasks; START_TRAINING {"retrain": True}.
    """
    action = payload.get("action")
    if not isinstance(action, str):
        raise Refused(400, "'action' is missing; expected a Label Studio webhook event")
    if action not in CHANGES | TRAIN:
        return None
    in_payload = project_id(payload["project"]) if payload.get("project") is not None else None
    if project_hint is None and in_payload is None:
        raise Refused(400, f"{action} names no project: put it in the webhook URL "
                           "(<backend>/webhook?project=<id>; `loop init` does) or turn the payload on")
    p = project_id(project_hint) if project_hint is not None else in_payload
    if not is_project(p):
        raise Refused(404, f"project {p} is not a loop project; run `loop init` for it first")
    if action in TRAIN:
        return p, {"action": action, "retrain": True}
    event: dict[str, Any] = {"action": action, "sync": True}
    ls_project = project_id(ls_project_hint) if ls_project_hint is not None else in_payload
    if ls_project is not None:
        event["ls_project"] = ls_project
    return p, event
