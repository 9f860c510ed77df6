"""Webhook payloads into trainer events: signals only; the loop project and the Label Studio project."""

from __future__ import annotations

import pytest

from ml_backend import webhooks


def is_project(p):
    return p == 3


def test_a_payload_less_event_names_the_queue_it_came_from():
    p, event = webhooks.parse({"action": "ANNOTATION_CREATED"}, is_project, "3", "41")
    assert p == 3 and event == {"action": "ANNOTATION_CREATED", "sync": True, "ls_project": 41}
    _, older = webhooks.parse({"action": "ANNOTATION_UPDATED"}, is_project, "3")  # a URL without ls_project
    assert "ls_project" not in older


def test_a_payload_is_a_signal_and_its_labels_are_not_read():
    payload = {"action": "ANNOTATION_CREATED", "project": {"id": 41},
               "annotation": {"id": 9, "task": 500, "result": "anything at all"}, "task": {"id": 500}}
    assert webhooks.parse(payload, is_project, "3", "41") == (3, {"action": "ANNOTATION_CREATED", "sync": True,
                                                                  "ls_project": 41})
    assert webhooks.parse({"action": "START_TRAINING", "project": 3}, is_project) == (
        3, {"action": "START_TRAINING", "retrain": True})
    with pytest.raises(webhooks.Refused, match="project 41 is not a loop project"):
        webhooks.parse(payload, is_project)  # without the URL's project, the queue's id is no loop project
    assert webhooks.parse({"action": "PROJECT_UPDATED"}, is_project) is None
