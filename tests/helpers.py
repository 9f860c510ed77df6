"""Helpers shared by tests (and benchmarks): paths, the shared datasets, guideline files, and what
tests do in Label Studio as an annotator would. Not a test module: nothing here is collected."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"../shared/data/{name} is absent (real-data test; runs where the shared datasets exist)")
    return path


def write_guideline(folder: Path, name: str, version: int, labels, body: str = "Body.", negatives=None) -> Path:
    """A guideline file vN.md with front matter (labels as a list, or a dict of definitions)."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(labels, dict):
        label_yaml = "labels:\n" + "".join(f'  {k}: "{v}"\n' for k, v in labels.items())
    else:
        label_yaml = f"labels: [{', '.join(labels)}]\n"
    neg = f"negatives: [{', '.join(negatives)}]\n" if negatives else ""
    path = folder / name
    path.write_text(f"---\nversion: {version}\n{label_yaml}{neg}---\n{body}\n", encoding="utf-8")
    return path


def cli(*args: str) -> dict | list:
    """Run `loop ARGS --json` in-process; asserts it succeeded and returns the parsed JSON."""
    import json

    from typer.testing import CliRunner

    from loop.cli.main import app

    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cli_fails(*args: str) -> str:
    """Run `loop ARGS`; asserts it failed with exit code 1 and returns what it printed."""
    from typer.testing import CliRunner

    from loop.cli.main import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1, result.output
    return result.output


def stamp(second: int) -> str:
    """A Label Studio `updated_at` timestamp, `second` seconds into a fixed minute."""
    return f"2026-11-22T10:00:{second:02d}.000000Z"


def login_token(url: str, email: str, password: str, timeout: float = 60.0) -> str:
    """Log in to Label Studio through the web form as a person would, and return their API token."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, follow_redirects=False) as web:
        web.get("/user/login/")
        resp = web.post("/user/login/", data={"email": email, "password": password,
                                              "csrfmiddlewaretoken": web.cookies.get("csrftoken", "")},
                        headers={"Referer": url.rstrip("/") + "/user/login/"})
        assert resp.status_code == 302, f"Label Studio refused the login of {email}"
        return web.get("/api/current-user/token").json()["token"]


def view_task_ids(ls, project_id: int, view_id: int) -> list[int]:
    """The task ids a Data Manager tab holds, as Label Studio lists them."""
    body = ls.http.get("/api/tasks", params={"project": project_id, "view": view_id, "page_size": 10000,
                                             "fields": "task_only"}).json()
    tasks = body.get("tasks", []) if isinstance(body, dict) else body
    return sorted(int(t["id"]) for t in tasks)


TICKET_LABELS = "billing,delivery,account,technical,out_of_scope"


def ticket_project(tmp_path: Path, lines: slice, tag: str, title: str) -> tuple[int, dict[str, str], list[dict]]:
    """`loop init` a project of the sample tickets `lines`, with ids and texts of the test's own
    (`tag`): the integration tests share one Label Studio and one embedding cache, and
    test_loop_e2e counts what `init` embeds. Returns (project id, item id -> true label, rows)."""
    import json

    rows = [json.loads(line) for line in (REPO / "examples" / "support_tickets.jsonl").read_text().splitlines()[lines]]
    data = tmp_path / "tickets.jsonl"
    data.write_text("".join(json.dumps({**r, "id": f"{tag}-{r['id']}", "text": f"{r['text']} ({tag})"}) + "\n"
                            for r in rows))
    p = cli("init", str(data), "--label-field", "label", "--labels", TICKET_LABELS, "--title", title)["project_id"]
    return p, {f"{tag}-{r['id']}": r["label"] for r in rows}, rows


def add_annotators(ls_url: str, people: dict[str, str]) -> dict:
    """`loop annotators add` each of `people` (name -> password), then an SDK client logged in as each."""
    from label_studio_sdk import LabelStudio

    clients = {}
    for name, password in people.items():
        cli("annotators", "add", name, "--password", password)
        clients[name] = LabelStudio(base_url=ls_url, api_key=login_token(ls_url, f"{name}@loop.local", password))
    return clients
