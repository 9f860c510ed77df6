"""The demo's annotator logins: generated, not written in the code, and the same on a second run."""

from __future__ import annotations

import stat
from types import SimpleNamespace

from loop.services.settings import load_settings
from loop.services.workspace import Workspace
from loop.workflows.demo import DEMO_ANNOTATORS, demo_passwords


def test_demo_passwords_are_generated_once_and_kept_privately(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no loop.toml
    settings = load_settings(workspace=str(tmp_path / "ws"))
    first = demo_passwords(SimpleNamespace(settings=settings))
    assert set(first) == set(DEMO_ANNOTATORS) and len(set(first.values())) == 3
    assert all(len(pw) >= 12 and "demo" not in pw for pw in first.values())
    assert demo_passwords(SimpleNamespace(settings=settings)) == first
    mode = Workspace(settings).credentials_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
