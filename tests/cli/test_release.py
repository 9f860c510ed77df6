"""`loop release` and `loop releases list|diff` through the CLI: JSON for scripts, the "nothing changed"
answer with exit code 0, and one-line errors. The curation tests' sample project in the real test
Redis (reached through REDIS_URL), labels as stored (--no-sync)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from tests.cli.conftest import one_error_line
from tests.curation.sample_project import P, build_project


@pytest.fixture
def env(clean_env, redis_server, redis_store, tmp_path, monkeypatch):
    build_project(redis_store, tmp_path)
    monkeypatch.setenv("REDIS_URL", f"unix://{redis_server.socket_file}")
    return SimpleNamespace(workspace=clean_env, store=redis_store)


def run(*args):
    return CliRunner().invoke(app, list(args))


def test_release_list_diff_and_nothing_changed(env):
    first = run("release", "--no-sync", "--note", "pilot", "--project", str(P), "--json")
    assert first.exit_code == 0, first.output
    made = json.loads(first.stdout)
    assert made["created"] and made["version"] == "v1"
    assert made["path"] == str(env.workspace / "releases" / f"project-{P}" / "v1")  # under the workspace by default
    assert "manifest.json" in made["files"] and "README.md" in made["files"]

    again = run("release", "--no-sync", "--project", str(P))
    assert again.exit_code == 0 and "Nothing changed since v1" in again.stdout
    assert json.loads(run("release", "--no-sync", "--project", str(P), "--json").stdout)["created"] is False

    listed = json.loads(run("releases", "list", "--project", str(P), "--json").stdout)
    assert [(r["version"], r["note"], r["state"]) for r in listed] == [("v1", "pilot", "ok")]
    verified = json.loads(run("releases", "list", "--verify", "--project", str(P), "--json").stdout)
    assert [r["state"] for r in verified] == ["ok"]
    table = run("releases", "list", "--project", str(P))
    assert table.exit_code == 0 and "v1" in table.stdout and "pilot" in table.stdout

    same = json.loads(run("releases", "diff", "v1", "v1", "--project", str(P), "--json").stdout)
    assert same["same_data"] and same["label_changes"] == [] and same["from"] == same["to"] == "v1"
    relabelled = {aid: ({**a, "label": "account"} if a["item_id"] == "it10" else a)
                  for aid, a in env.store.annotations(P).items()}
    env.store.replace_annotations(P, relabelled)
    second = run("release", "--no-sync", "--project", str(P))
    assert second.exit_code == 0, second.output
    assert "Released v2" in second.stdout and "since v1: 0 added, 0 removed" in second.stdout
    shown = run("releases", "diff", "v1", "1", "--project", str(P))
    assert shown.exit_code == 0, shown.output
    assert "v1 -> v1 (same items, texts, labels and splits)" in shown.stdout and "class balance" in shown.stdout


def test_unknown_versions_and_a_needless_audit_note_are_one_error_line(env):
    assert run("release", "--no-sync", "--project", str(P), "--json").exit_code == 0
    one_error_line(run("releases", "diff", "v1", "v4", "--project", str(P)), "no release v4", "its releases: v1")
    one_error_line(run("releases", "diff", "latest", "v1", "--project", str(P)), "not a release version")
    one_error_line(run("release", "--no-sync", "--project", str(P), "--accept-audit", "fine"),
                   "--accept-audit", "there is no audit")
