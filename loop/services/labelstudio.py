"""The one module that talks to Label Studio: the SDK where it covers a call, plain HTTP where not.

Every failure becomes a LoopError that says what failed and how to fix it: an unreachable server,
a refused token, a request Label Studio rejected.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Iterable, Sequence

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from loop.errors import LabelStudioError, ServiceUnavailable
from loop.labels.interface import OBJECT, label_config

IMPORT_BATCH = 1000
CHANGED_TASK_FIELDS = ("id,updated_at,annotations,result,completed_by,updated_by,was_cancelled,created_at,"
                       "parent_prediction")


class LabelStudioClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {token}"}, timeout=timeout)

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServiceUnavailable(f"Label Studio at {self.url} is unreachable ({exc}); start it with "
                                     "`loop up` or set LOOP_LABEL_STUDIO_URL") from None
        except httpx.TimeoutException:
            raise ServiceUnavailable(f"Label Studio at {self.url} did not answer in time while trying to "
                                     f"{what}; check its log (.loop/logs/label-studio.log)") from None
        except ApiError as exc:
            raise self._refused(what, exc.status_code, exc.body) from None

    def _refused(self, what: str, status: int | None, body: Any) -> Exception:
        if status == 401:
            return LabelStudioError(f"Label Studio at {self.url} refused the API token; set "
                                    "LABEL_STUDIO_USER_TOKEN to the legacy token shown under Account & Settings")
        return LabelStudioError(f"Label Studio could not {what} (HTTP {status}): {str(body)[:300]}")

    def _http(self, what: str, method: str, path: str, **kwargs) -> Any:
        resp = self._call(what, self.http.request, method, path, **kwargs)
        if resp.status_code >= 400:
            raise self._refused(what, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def check(self) -> dict[str, Any]:
        """Who we are; fails clearly when the server is down or the token is wrong."""
        return self._http("check the API token", "GET", "/api/current-user/whoami")

    # -- projects and tasks -----------------------------------------------------------------
    def create_project(self, title: str, labels: Sequence[str], description: str = "", *,
                       suggestions: bool = False, sampling: str = "Uncertainty sampling") -> int:
        """A text-classification project. `suggestions` pre-ticks the model's answer for annotators
        (Label Studio's "use predictions to prelabel"): off unless a team wants assisted labelling."""
        project = self._call("create the project", self.sdk.projects.create, title=title,
                             label_config=label_config(labels), expert_instruction=description,
                             show_instruction=bool(description), sampling=sampling,
                             show_collab_predictions=suggestions, maximum_annotations=1)
        return int(project.id)

    def find_project(self, title: str) -> int | None:
        """The id of the project with exactly this title (the newest if several), or None."""
        page, found = 1, []
        while True:
            body = self._http("list projects", "GET", "/api/projects/", params={"page": page, "page_size": 100})
            results = body.get("results", []) if isinstance(body, dict) else body
            found += [int(p["id"]) for p in results if p.get("title") == title]
            if not isinstance(body, dict) or not body.get("next"):
                return max(found, default=None)
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self._http(f"read project {project_id} (does it exist?)", "GET", f"/api/projects/{project_id}")

    def annotation_count(self, project_id: int) -> int:
        """Every annotation of the project, skipped ones included, as Label Studio counts them."""
        project = self.project(project_id)
        return int(project.get("total_annotations_number") or 0) + int(project.get("skipped_annotations_number") or 0)

    def update_project(self, project_id: int, **fields: Any) -> None:
        self._http(f"update project {project_id}", "PATCH", f"/api/projects/{project_id}", json=fields)

    def _task_pages(self, what: str, params: dict[str, Any], page_size: int) -> Iterable[list[dict[str, Any]]]:
        """The Data Manager's task list, page by page; never asks past the last page (Label Studio
        answers 404 there), using the `total` it reports."""
        page, seen = 1, 0
        while True:
            body = self._http(what, "GET", "/api/tasks", params={**params, "page": page, "page_size": page_size})
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            yield tasks
            seen += len(tasks)
            total = body.get("total") if isinstance(body, dict) else None
            if len(tasks) < page_size or (total is not None and seen >= total):
                return
            page += 1

    def _task_data(self, project_id: int, what: str) -> Iterable[dict[str, Any]]:
        for tasks in self._task_pages(what, {"project": project_id, "fields": "task_only", "include": "id,data"}, 5000):
            yield from tasks

    def task_item_ids(self, project_id: int) -> dict[str, int]:
        """item id -> task id for every task of the project that carries our `item_id`."""
        return {str(t["data"]["item_id"]): int(t["id"]) for t in self._task_data(project_id, "list tasks")
                if (t.get("data") or {}).get("item_id") is not None}

    def task_texts(self, project_id: int) -> dict[str, str]:
        """item id -> text, as the tasks carry it (the text annotators saw), for tasks with our `item_id`."""
        return {str(t["data"]["item_id"]): t["data"][OBJECT] for t in self._task_data(project_id, "list task texts")
                if (t.get("data") or {}).get("item_id") is not None and isinstance(t["data"].get(OBJECT), str)}

    def changed_tasks(self, project_id: int, after: str | None = None, page_size: int = 1000) -> list[dict[str, Any]]:
        """Tasks with their annotations ({id, updated_at, annotations}) updated after `after`, a
        timestamp in Label Studio's own format (one of its tasks' `updated_at`); every task when None.

        Label Studio stamps a task's `updated_at` whenever one of its annotations is created,
        changed or deleted (and when a prediction is added), so this finds every annotation change
        since `after` without an export (the export of 1,000 labelled tasks takes about 3 s, of
        10,000 about 30 s; one changed task among 10,000 comes back in 0.13 s).
        """
        # `include` trims the Data Manager's columns (2.1 s per 1,000 tasks instead of 7.2 s); it
        # filters the annotations' own fields too, so it names the ones `Recorder.record` reads.
        params: dict[str, Any] = {"project": project_id, "fields": "all", "include": CHANGED_TASK_FIELDS}
        if after is not None:
            params["query"] = json.dumps({"filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": after}]}})
        return [{"id": int(t["id"]), "updated_at": t.get("updated_at"), "annotations": t.get("annotations") or []}
                for tasks in self._task_pages("list changed tasks", params, page_size) for t in tasks]

    def newest_task_stamp(self, project_id: int) -> str | None:
        """The newest `updated_at` among the project's tasks (None when it has none): where a read
        that found no labels can start the next one from."""
        params = {"project": project_id, "fields": "task_only", "include": "id,updated_at", "page": 1, "page_size": 1,
                  "query": json.dumps({"ordering": ["-tasks:updated_at"]})}
        body = self._http("find the newest task", "GET", "/api/tasks", params=params)
        tasks = body.get("tasks", []) if isinstance(body, dict) else body
        return tasks[0].get("updated_at") if tasks else None

    def import_tasks(self, project_id: int, rows: Sequence[dict[str, Any]], progress=None) -> list[int]:
        """Import task data rows; returns the new task ids in row order."""
        ids: list[int] = []
        for start in range(0, len(rows), IMPORT_BATCH):
            chunk = list(rows[start:start + IMPORT_BATCH])
            res = self._call("import tasks", self.sdk.projects.import_tasks, id=project_id, request=chunk,
                             return_task_ids=True)
            if not res.task_ids or len(res.task_ids) != len(chunk):
                raise LabelStudioError(f"Label Studio imported {len(res.task_ids or [])} of {len(chunk)} tasks; "
                                       "re-run the command: already imported items are skipped")
            ids.extend(int(i) for i in res.task_ids)
            if progress:
                progress(len(chunk))
        return ids

    def delete_task(self, task_id: int) -> None:
        """Delete a task (and what hangs on it); a task already gone is no error (idempotent)."""
        resp = self._call(f"delete task {task_id}", self.http.request, "DELETE", f"/api/tasks/{task_id}/")
        if resp.status_code >= 400 and resp.status_code != 404:
            raise self._refused(f"delete task {task_id}", resp.status_code, resp.text)

    def set_overlap(self, task_ids: Iterable[int], overlap: int) -> None:
        for tid in task_ids:
            self._http(f"set the overlap of task {tid}", "PATCH", f"/api/tasks/{tid}/", json={"overlap": overlap})

    # -- views, predictions, annotations ----------------------------------------------------
    def views(self, project_id: int) -> list[dict[str, Any]]:
        return self._http("list views", "GET", "/api/dm/views/", params={"project": project_id})

    def ensure_view(self, project_id: int, title: str, task_ids: Sequence[int] | None = None,
                    hidden_columns: dict[str, list[str]] | None = None) -> int:
        """A Data Manager tab holding exactly these tasks (every task when None); reuses a tab of
        that title (idempotent). `hidden_columns` ({"explore": [...], "labeling": [...]}): Label
        Studio fills a tab's columns (Completed, Annotated by, ...) only when the tab lists which
        columns it hides."""
        data: dict[str, Any] = {"title": title}
        if task_ids is not None:
            data["filters"] = {"conjunction": "or", "items": [
                {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": int(t)}
                for t in task_ids]}
        if hidden_columns is not None:
            data["hiddenColumns"] = hidden_columns
        for view in self.views(project_id):
            if (view.get("data") or {}).get("title") == title:
                self._http("update a view", "PATCH", f"/api/dm/views/{view['id']}/",
                           json={"project": project_id, "data": data})
                return int(view["id"])
        view = self._http("create a view", "POST", "/api/dm/views/", json={"project": project_id, "data": data})
        return int(view["id"])

    def predictions(self, project_id: int) -> list[dict[str, Any]]:
        # Filter by the task's project: predictions made by the import API carry no project of their own.
        return self._http("list predictions", "GET", "/api/predictions/", params={"task__project": project_id})

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> None:
        if predictions:
            self._http("import predictions", "POST", f"/api/projects/{project_id}/import/predictions",
                       json=list(predictions))

    def delete_prediction(self, prediction_id: int) -> None:
        self._http(f"delete prediction {prediction_id}", "DELETE", f"/api/predictions/{prediction_id}/")

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every labelled task with its annotations, through Label Studio's JSON export (slow on big
        projects: about 3 s per 1,000 labelled tasks)."""
        body = self._http("export annotations", "GET", f"/api/projects/{project_id}/export",
                          params={"exportType": "JSON", "download_all_tasks": "false"})
        if body is None:  # nothing labelled yet: Label Studio may answer with an empty body
            return []
        if not isinstance(body, list):
            raise LabelStudioError(f"Label Studio's export of project {project_id} is not a list of tasks: "
                                   f"{str(body)[:200]}")
        return body

    # -- users ------------------------------------------------------------------------------
    def users(self) -> list[dict[str, Any]]:
        return self._http("list users", "GET", "/api/users/")

    def signup_user(self, email: str, password: str) -> int:
        """Create a user with a working login through the organisation's invite link.

        The open-source `users.create` API makes users without a password; the invite-link
        signup form is the path Label Studio itself offers people, and it sets one.
        """
        invite = self._http("get the invite link", "GET", "/api/invite")
        with httpx.Client(base_url=self.url, timeout=self.http.timeout, follow_redirects=False) as web:
            self._call("open the signup page", web.get, invite["invite_url"])
            resp = self._call("sign up the user", web.post, invite["invite_url"], data={
                "email": email, "password": password, "csrfmiddlewaretoken": web.cookies.get("csrftoken", "")},
                headers={"Referer": self.url + invite["invite_url"]})
        if resp.status_code != 302:
            errors = re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', resp.text)
            raise LabelStudioError(f"Label Studio refused to sign up {email} (HTTP {resp.status_code}"
                                   f"{': ' + '; '.join(e.strip() for e in errors) if errors else ''}); "
                                   "passwords need at least 8 characters")
        for user in self.users():
            if user.get("email") == email:
                return int(user["id"])
        raise LabelStudioError(f"signed up {email}, but Label Studio does not list the user")

    # -- ML backend and webhooks ------------------------------------------------------------
    def connect_ml_backend(self, project_id: int, url: str, title: str = "loop",
                           auth: tuple[str, str] | None = None) -> int:
        existing = self._http("list ML backends", "GET", "/api/ml", params={"project": project_id})
        for backend in existing:
            if backend.get("url", "").rstrip("/") == url.rstrip("/"):
                return int(backend["id"])
        body = {"project": project_id, "url": url, "title": title, "is_interactive": False}
        if auth:
            body |= {"auth_method": "BASIC_AUTH", "basic_auth_user": auth[0], "basic_auth_pass": auth[1]}
        backend = self._http(f"connect the ML backend at {url} (is it running? `loop ps`)", "POST", "/api/ml",
                             json=body)
        return int(backend["id"])

    def ensure_webhook(self, project_id: int, url: str, actions: Sequence[str],
                       auth: tuple[str, str] | None = None, loop_project: int | None = None) -> int:
        """Label Studio project `project_id` calls `url` on `actions`, naming in the URL the loop
        project (`loop_project`, default the same id: an annotator's queue belongs to a loop project
        with another id) and the Label Studio project the change happened in."""
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        # No payload: with one, Label Studio serialises the project with all its counts inside the
        # annotator's submit (+19 to +30 ms at 300 tasks in most runs, growing with the project).
        # The trainer reads the changed tasks itself; the URL names the project.
        query = f"project={loop_project or project_id}&ls_project={project_id}"
        body = {"project": project_id, "url": f"{url}?{query}", "send_payload": False,
                "send_for_all_actions": False, "actions": list(actions), "is_active": True, "headers": headers}
        for hook in self._http("list webhooks", "GET", "/api/webhooks/", params={"project": project_id}):
            if (hook.get("url") or "").split("?")[0] == url:
                # Connecting an ML backend makes Label Studio add its own webhook to <backend>/webhook,
                # for all actions and without our login: take it over.
                self._http("update a webhook", "PATCH", f"/api/webhooks/{hook['id']}/", json=body)
                return int(hook["id"])
        return int(self._http("create a webhook", "POST", "/api/webhooks/", json=body)["id"])
