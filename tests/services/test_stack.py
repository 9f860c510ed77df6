"""The local stack's Label Studio environment: telemetry off, checked on the dict and, where the
Label Studio virtualenv exists, on Label Studio's own settings loaded under that environment."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from loop.services.settings import Settings
from loop.services.stack import TELEMETRY_OFF, label_studio_env
from loop.services.workspace import Credentials, Workspace
from tests.helpers import REPO

CREDS = Credentials(username="admin@loop.local", password="pw", token="tok")


@pytest.fixture
def env(tmp_path):
    return label_studio_env(Workspace(Settings(workspace=str(tmp_path / "ws"))), CREDS)


# Each phone-home, the value that switches it off, and what reading it finds with Label Studio's
# precedence (label_studio/core/utils/params.py `get_env`: LABEL_STUDIO_X, then HEARTEX_X, then X).
OFF = {
    "SENTRY_DSN": "",                 # server Sentry: core/utils/sentry.py inits only `if settings.SENTRY_DSN`
    "FRONTEND_SENTRY_DSN": "",        # browser Sentry: templates/base.html `{% if settings.FRONTEND_SENTRY_DSN %}`
    "COLLECT_ANALYTICS": "false",     # tele.labelstud.io, gtag, /__lsa: core/utils/contextlog.py, templates
    "LATEST_VERSION_CHECK": "false",  # pypi.org: core/utils/common.py check_for_the_latest_version
    "FEATURE_FLAGS_OFFLINE": "true",  # LaunchDarkly: core/feature_flags/base.py
}


def ls_get_env(environ: dict[str, str], name: str) -> str | None:
    """Label Studio's lookup order, label_studio/core/utils/params.py lines 114-122."""
    for key in ("LABEL_STUDIO_" + name, "HEARTEX_" + name, name):
        if key in environ:
            return environ[key]
    return None


def test_every_phone_home_is_switched_off(env):
    assert set(TELEMETRY_OFF) <= set(env) and all(env[k] == v for k, v in TELEMETRY_OFF.items())
    for name, off in OFF.items():
        assert ls_get_env(env, name) == off, name


def test_the_shell_cannot_switch_telemetry_back_on(env):
    # `loop up` starts Label Studio with {**os.environ, **label_studio_env(...)}: settings exported
    # by the shell under the plain or HEARTEX_ names lose to the LABEL_STUDIO_ names loop sets.
    shell = {name: "https://key@example.invalid/1" if name.endswith("DSN") else ("false" if off == "true" else "true")
             for name, off in OFF.items()}
    shell |= {"HEARTEX_" + k: v for k, v in shell.items()}
    merged = {**shell, **env}
    for name, off in OFF.items():
        assert ls_get_env(merged, name) == off, name


def test_the_rest_of_the_environment_is_unchanged(env, tmp_path):
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str((tmp_path / "ws" / "label-studio").resolve())
    assert env["LABEL_STUDIO_USERNAME"] == "admin@loop.local" and env["LABEL_STUDIO_USER_TOKEN"] == "tok"
    assert env["USE_DEFAULT_BANNED_SUBNETS"] == "false" and env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"


PROBE = """
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ['DJANGO_SETTINGS_MODULE'] = 'label_studio.core.settings.label_studio'
from django.conf import settings
import sentry_sdk
print(json.dumps({"SENTRY_DSN": settings.SENTRY_DSN, "FRONTEND_SENTRY_DSN": settings.FRONTEND_SENTRY_DSN,
                  "COLLECT_ANALYTICS": settings.COLLECT_ANALYTICS,
                  "LATEST_VERSION_CHECK": settings.LATEST_VERSION_CHECK,
                  "FEATURE_FLAGS_OFFLINE": settings.FEATURE_FLAGS_OFFLINE,
                  "sentry_active": sentry_sdk.get_client().is_active()}))
"""


def label_studio_python() -> Path:
    venv = Path(os.environ.get("LOOP_LABEL_STUDIO_VENV") or REPO / ".venv-label-studio")
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Label Studio virtualenv at {venv} (`make install` makes it; or set LOOP_LABEL_STUDIO_VENV)")
    return python


def test_label_studio_loads_its_settings_with_telemetry_off(env, tmp_path):
    """Label Studio's real settings module, under the environment `loop up` gives it, with a shell
    that asks for every phone-home (Sentry pointed at a closed local port, so a failure of this
    test sends nothing anywhere)."""
    python = label_studio_python()
    shell = {"SENTRY_DSN": "http://key@127.0.0.1:9/1", "FRONTEND_SENTRY_DSN": "http://key@127.0.0.1:9/2",
             "COLLECT_ANALYTICS": "true", "FEATURE_FLAGS_OFFLINE": "false"}
    run_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **shell, **env}
    Path(env["LABEL_STUDIO_BASE_DATA_DIR"]).mkdir(parents=True)
    out = subprocess.run([str(python), "-c", PROBE], env=run_env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": False,
                     "LATEST_VERSION_CHECK": False, "FEATURE_FLAGS_OFFLINE": True, "sentry_active": False}
