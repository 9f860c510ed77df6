"""`loop up --label-studio-db postgres` in a workspace of its own, on free ports: PostgreSQL starts
before Label Studio, Label Studio keeps a project and its task in PostgreSQL's tables (read back
with psql and the generated password), `loop ps` shows both healthy, `loop down` stops both, and a
later `loop up` without the option finds the same data (the workspace keeps its database). Skipped
where PostgreSQL is not installed (`.ci/run` installs Debian's `postgresql`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from loop.services import stack
from loop.services.labelstudio import LabelStudioClient
from loop.services.settings import Settings, load_settings
from loop.services.workspace import Workspace, credentials, postgres_password
from tests.helpers import REPO
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

TEXT = "postgres-test: the invoice total is wrong after the refund"


def loop(*args: str):
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def psql(pg: stack.Postgres, settings, sql: str) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": postgres_password(settings)}
    out = subprocess.run([pg.program("psql"), "-h", "127.0.0.1", "-p", str(settings.postgres_port), "-U",
                          stack.PG_ROLE, "-d", stack.PG_DATABASE, "-w", "-Atc", sql], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def pg_env(tmp_path):
    try:
        stack.postgres_layout(Workspace(Settings(workspace=str(tmp_path / "probe"))))
    except Exception as exc:  # ConfigError: not installed, or no user to run it as
        pytest.skip(f"PostgreSQL is not installed here: {exc}")
    # Every setting at its default (a session run with LOOP_TEST_LABEL_STUDIO_DB=postgres exports some),
    # but a workspace and ports of this test's own, and the session's Label Studio virtualenv.
    declared = [f.metadata["env"] for f in Settings.__dataclass_fields__.values()]
    env = {"LOOP_WORKSPACE": str(tmp_path / "ws"), "LOOP_REDIS_PORT": str(free_port()),
           "LOOP_LABEL_STUDIO_PORT": str(free_port()), "LOOP_ML_BACKEND_PORT": str(free_port()),
           "LOOP_POSTGRES_PORT": str(free_port()),
           "LOOP_LABEL_STUDIO_VENV": os.environ.get("LOOP_LABEL_STUDIO_VENV") or str(REPO / ".venv-label-studio")}
    saved = {k: os.environ.get(k) for k in [*declared, "LOOP_CONFIG"]}
    for k in saved:
        os.environ.pop(k, None)
    os.environ.update(env)  # what the CLI commands below, and load_settings, read
    settings = load_settings()
    try:
        yield settings
    finally:
        stack.down(settings, log=lambda m: None)
        data_dir = Workspace(settings).postgres_dir_file
        if data_dir.exists() and not Path(data_dir.read_text()).is_relative_to(settings.workspace_path):
            shutil.rmtree(data_dir.read_text(), ignore_errors=True)  # as root it is outside the workspace
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_label_studio_keeps_its_data_in_postgres(pg_env):
    settings = pg_env
    ws = Workspace(settings)
    services = {s["name"]: s for s in loop("up", "--label-studio-db", "postgres")}
    assert list(services)[:3] == ["redis", "postgres", "label-studio"]
    assert all(s["healthy"] for s in services.values()), services
    assert services["postgres"]["url"] == f"postgresql://label_studio:***@127.0.0.1:{settings.postgres_port}/label_studio"
    assert ws.label_studio_db_file.read_text() == "postgres"
    assert not (ws.label_studio_dir / "label_studio.sqlite3").exists()  # no SQLite beside it

    ls = LabelStudioClient(settings.ls_url, credentials(settings).token)
    project = ls.create_project("postgres-test tickets", ["billing", "other"])
    [task] = ls.import_tasks(project, [{"text": TEXT, "item_id": "pg-1"}])

    pg = stack.postgres_layout(ws)
    assert psql(pg, settings, f"select title from project where id = {project}") == "postgres-test tickets"
    assert psql(pg, settings, f"select project_id, data->>'text' from task where id = {task}") == f"{project}|{TEXT}"
    assert psql(pg, settings, "select email from htx_user where email = 'admin@loop.local'") == "admin@loop.local"

    pids = {name: int(ws.pid_file(name).read_text()) for name in ("postgres", "label-studio")}
    assert {s["name"]: s["healthy"] for s in loop("ps")}["postgres"] is True
    stopped = loop("down")["stopped"]
    assert {"postgres", "label-studio"} <= set(stopped)
    assert stopped.index("label-studio") < stopped.index("postgres")  # Label Studio first, then its database
    assert not any(stack._alive(pid) for pid in pids.values())
    assert not stack.postgres_ready(pg, settings.postgres_port)

    # `loop up` again, without the option: the workspace keeps PostgreSQL, and the project is still there.
    services = {s["name"]: s for s in loop("up")}
    assert services["postgres"]["healthy"] and services["label-studio"]["healthy"]
    assert ls.task_texts(project) == {"pg-1": TEXT}
    assert stack.postgres_layout(ws).data_dir == pg.data_dir
    stopped = loop("down")["stopped"]
    assert "postgres" in stopped
