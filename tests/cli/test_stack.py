"""`loop credentials` and what `loop up` says about logging in: the admin password only on the
first start, never in --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from loop.cli.stack import admin_login_is_new, login_line
from loop.services.settings import load_settings
from loop.services.workspace import Credentials
from tests.cli.conftest import one_error_line

KEPT = {"password": "admin-pass-123", "token": "tok" * 10, "redis_password": "r" * 48,
        "ml_backend_user": "label-studio", "ml_backend_password": "backend-pass-456"}


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def words(text: str) -> str:
    """`text` with rich's line wrapping undone."""
    return " ".join(text.split())


def keep(workspace, secrets: dict) -> str:
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "credentials.json").write_text(json.dumps(secrets))
    return (workspace / "credentials.json").read_text()


# -- loop up: the password on the first start only -----------------------------------------------
@pytest.mark.parametrize("kept_before, new", [
    ({}, True),                                    # no credentials.json yet
    ({"redis_password": "x"}, True),               # made by an earlier command for Redis, no admin login yet
    ({"redis_password": "x", "password": "p", "token": "t"}, False),
])
def test_the_admin_login_is_new_only_when_none_was_kept(clean_env, kept_before, new):
    assert admin_login_is_new(load_settings(), kept_before) is new


def test_an_external_label_studio_has_no_login_of_ours(clean_env, monkeypatch):
    monkeypatch.setenv("LOOP_LABEL_STUDIO_URL", "http://ls.example:8080")
    settings = load_settings()
    assert admin_login_is_new(settings, {}) is False
    assert "password" not in login_line(settings, None, False) and "yours" in login_line(settings, None, False)


def test_login_line_shows_the_password_only_when_new(clean_env):
    settings, creds = load_settings(), Credentials("admin@loop.local", "s3cret-pw", "tok")
    assert "admin@loop.local / s3cret-pw" in login_line(settings, creds, True)
    later = login_line(settings, creds, False)
    assert "s3cret-pw" not in later and "`loop credentials`" in later and "admin@loop.local" in later


@pytest.fixture
def fake_up(monkeypatch):
    """`stack.up` that starts nothing but keeps the admin login as the real one does on first start."""
    from loop.services.stack import ServiceStatus
    from loop.services.workspace import credentials

    def up(settings, log=print):
        credentials(settings)
        return [ServiceStatus("label-studio", settings.ls_url, 4242, True, True, True)]

    monkeypatch.setattr("loop.services.stack.up", up)


def test_up_prints_the_password_on_the_first_start_only(clean_env, fake_up):
    first = run("up")
    assert first.exit_code == 0, first.output
    password = json.loads((clean_env / "credentials.json").read_text())["password"]
    assert password in first.stdout
    again = run("up")
    assert again.exit_code == 0, again.output
    assert password not in again.stdout and "run `loop credentials` to see the logins" in words(again.stdout)


def test_up_json_never_holds_the_password(clean_env, fake_up):
    first = run("up", "--json")
    password = json.loads((clean_env / "credentials.json").read_text())["password"]
    second = run("up", "--json")
    for result in (first, second):
        assert result.exit_code == 0, result.output
        assert password not in result.stdout
        assert json.loads(result.stdout)[0]["name"] == "label-studio"


# -- loop credentials --------------------------------------------------------------------------
def test_credentials_shows_the_kept_logins(clean_env):
    before = keep(clean_env, KEPT)
    out = run("credentials", "--json")
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["label_studio"] == {"url": "http://127.0.0.1:8480", "run_by_loop": True, "email": "admin@loop.local",
                                 "password": KEPT["password"], "token": KEPT["token"]}
    assert d["ml_backend"] == {"url": "http://127.0.0.1:9090", "user": "label-studio",
                               "password": KEPT["ml_backend_password"], "note": None}
    assert d["credentials_file"] == str(clean_env / "credentials.json")
    table = run("credentials")
    assert table.exit_code == 0, table.output
    for value in (KEPT["password"], KEPT["token"], KEPT["ml_backend_password"], "admin@loop.local"):
        assert value in table.stdout
    assert (clean_env / "credentials.json").read_text() == before  # read, never rewritten


def test_credentials_settings_win_over_the_kept_ones(clean_env, monkeypatch):
    keep(clean_env, KEPT)
    monkeypatch.setenv("LABEL_STUDIO_PASSWORD", "from-the-env")
    monkeypatch.setenv("LOOP_ML_BACKEND_AUTH", "off")
    d = json.loads(run("credentials", "--json").stdout)
    assert d["label_studio"]["password"] == "from-the-env"
    assert d["ml_backend"]["user"] is None and "off" in d["ml_backend"]["note"]


def test_credentials_before_the_first_up_is_one_error_line_and_makes_nothing(clean_env):
    one_error_line(run("credentials"), "no Label Studio login", "loop up")
    assert not clean_env.exists()
    keep(clean_env, {"redis_password": "x"})  # an earlier command kept Redis's password only
    one_error_line(run("credentials", "--json"), "loop up")
    assert json.loads((clean_env / "credentials.json").read_text()) == {"redis_password": "x"}


def test_credentials_of_an_external_label_studio_come_from_the_settings(clean_env, monkeypatch):
    monkeypatch.setenv("LOOP_LABEL_STUDIO_URL", "http://ls.example:8080")
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", "their-token")
    monkeypatch.setenv("LOOP_ML_BACKEND_AUTH", "off")
    out = run("credentials", "--json")
    assert out.exit_code == 0, out.output
    ls = json.loads(out.stdout)["label_studio"]
    assert ls == {"url": "http://ls.example:8080", "run_by_loop": False, "email": None, "password": None,
                  "token": "their-token"}
    assert not clean_env.exists()


def test_a_broken_credentials_file_is_one_error_line(clean_env):
    clean_env.mkdir()
    (clean_env / "credentials.json").write_text("{not json")
    one_error_line(run("credentials"), "credentials.json", "not a JSON object")
