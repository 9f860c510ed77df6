"""Webhook payloads into trainer events: the loop project and the Label Studio project it came from."""

from __future__ import annotations

import pytest

from ml_backend import webhooks


class Recorded:
    def __init__(self):
        self.calls = []

    def __call__(self, p, tasks, anns):
        self.calls.append((p, tasks, anns))
        return self if p == 3 else None

    def record(self, ann, task_id, ls_project=None):
        return {"id": str(ann["id"]), "task_id": task_id, "ls_project": ls_project}


def test_a_payload_less_event_names_the_queue_it_came_from():
    p, event = webhooks.parse({"action": "ANNOTATION_CREATED"}, Recorded(), "3", "41")
    assert p == 3 and event == {"action": "ANNOTATION_CREATED", "sync": True, "upsert": [], "remove": [],
                                "ls_project": 41}
    _, older = webhooks.parse({"action": "ANNOTATION_UPDATED"}, Recorded(), "3")  # a URL without ls_project
    assert "ls_project" not in older


def test_a_payload_from_a_queue_belongs_to_the_loop_project_in_the_url():
    payload = {"action": "ANNOTATION_CREATED", "project": {"id": 41},
               "annotation": {"id": 9, "task": 500}, "task": {"id": 500, "data": {"text": "hi"}}}
    p, event = webhooks.parse(payload, Recorded(), "3", "41")
    assert p == 3 and event["upsert"] == [{"id": "9", "task_id": 500, "ls_project": 41}]
    with pytest.raises(webhooks.Refused, match="project 41 is not a loop project"):
        webhooks.parse(payload, Recorded())  # without the URL's project, the queue's id is no loop project
