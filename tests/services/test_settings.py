"""Settings: defaults < loop.toml < environment < explicit overrides; bad keys and types fail by name."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from loop.errors import ConfigError
from loop.services.settings import Settings, describe, load_settings

ENV_VARS = [f.metadata["env"] for f in fields(Settings)] + ["LOOP_CONFIG"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No setting from the developer's shell or a loop.toml in the repo may leak in."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write_toml(tmp_path: Path, text: str, name: str = "loop.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_declared_table():
    s = load_settings()
    for f in fields(Settings):
        assert getattr(s, f.name) == f.default, f.name
    assert s == Settings()


def test_some_concrete_defaults():
    s = load_settings()
    assert s.redis_port == 6390
    assert s.workspace == ".loop"
    assert s.embedded_redis and s.embedded_label_studio
    assert s.ls_url == "http://127.0.0.1:8480"
    assert s.backend_url == "http://127.0.0.1:9090"


def test_env_overrides_with_types(monkeypatch):
    monkeypatch.setenv("LOOP_REDIS_PORT", "7001")
    monkeypatch.setenv("LOOP_STARTUP_TIMEOUT", "12.5")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/2")
    monkeypatch.setenv("LOOP_LABEL_STUDIO_URL", "http://ls.example:8080/")
    s = load_settings()
    assert s.redis_port == 7001 and isinstance(s.redis_port, int)
    assert s.startup_timeout == 12.5 and isinstance(s.startup_timeout, float)
    assert s.redis_url == "redis://elsewhere:6379/2"
    assert not s.embedded_redis
    assert s.ls_url == "http://ls.example:8080"  # trailing slash dropped
    assert not s.embedded_label_studio


def test_toml_values(tmp_path):
    write_toml(tmp_path, 'workspace = "/srv/loop"\nredis_port = 7002\nrequest_timeout = 5\n'
                         'ml_backend_port = 9191\n')
    s = load_settings()
    assert s.workspace == "/srv/loop"
    assert s.redis_port == 7002
    assert s.request_timeout == 5.0 and isinstance(s.request_timeout, float)
    assert s.backend_url == "http://127.0.0.1:9191"
    assert s.label_studio_port == 8480  # untouched keys keep their default


def test_env_beats_toml(tmp_path, monkeypatch):
    write_toml(tmp_path, 'redis_port = 7002\nworkspace = "from-toml"\n')
    monkeypatch.setenv("LOOP_REDIS_PORT", "7003")
    s = load_settings()
    assert s.redis_port == 7003
    assert s.workspace == "from-toml"


def test_overrides_beat_env(monkeypatch):
    monkeypatch.setenv("LOOP_REDIS_PORT", "7003")
    assert load_settings(redis_port=7004).redis_port == 7004
    assert load_settings(redis_port=None).redis_port == 7003  # None means "not given"


def test_loop_config_env_names_the_file(tmp_path, monkeypatch):
    path = write_toml(tmp_path, "redis_port = 7005\n", name="elsewhere.toml")
    write_toml(tmp_path, "redis_port = 7006\n")  # the cwd file is ignored when LOOP_CONFIG is set
    monkeypatch.setenv("LOOP_CONFIG", str(path))
    assert load_settings().redis_port == 7005


def test_explicit_config_file(tmp_path):
    path = write_toml(tmp_path, "label_studio_port = 8999\n", name="explicit.toml")
    assert load_settings(path).label_studio_port == 8999


def test_explicit_config_file_must_exist(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "missing.toml")
    assert "missing.toml" in str(exc.value)


def test_unknown_key_names_the_key(tmp_path):
    write_toml(tmp_path, "redis_port = 7002\nredis_prot = 7003\n")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    msg = str(exc.value)
    assert "'redis_prot'" in msg
    assert "loop.toml" in msg
    assert "redis_port" in msg  # lists the known settings so the typo is easy to spot


def test_invalid_toml(tmp_path):
    write_toml(tmp_path, "redis_port = = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "loop.toml" in str(exc.value)


@pytest.mark.parametrize("text, key", [
    ('redis_port = "not a port"\n', "redis_port"),
    ("redis_port = true\n", "redis_port"),
    ("label_studio_port = [1, 2]\n", "label_studio_port"),
    ('startup_timeout = "soon"\n', "startup_timeout"),
])
def test_wrong_type_in_toml(tmp_path, text, key):
    write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    msg = str(exc.value)
    assert repr(key) in msg
    assert "loop.toml" in msg


@pytest.mark.parametrize("env, value", [("LOOP_REDIS_PORT", "63x0"), ("LOOP_REQUEST_TIMEOUT", "a minute"),
                                        ("LOOP_ML_BACKEND_PORT", "")])
def test_wrong_type_in_env(monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert f"${env}" in str(exc.value)


def test_describe_covers_every_field():
    rows = describe()
    declared = fields(Settings)
    assert [r[0] for r in rows] == [f.name for f in declared]
    for (key, env, default, help_text), f in zip(rows, declared):
        assert env and env == env.upper(), key
        assert help_text.strip(), key
        assert f.default is not MISSING
        assert default == repr(f.default)
    envs = [r[1] for r in rows]
    assert len(set(envs)) == len(envs)  # one variable per setting


def test_every_described_env_var_is_honoured(monkeypatch):
    """Each variable in the table really sets its field."""
    samples = {"str": "sample-value", "int": "4242", "float": "42.5"}
    declared = {f.name: f for f in fields(Settings)}
    for key, env, _, _ in describe():
        choices = declared[key].metadata["choices"]
        sample = choices[-1] if choices else samples[declared[key].type]  # a value other than the default
        monkeypatch.setenv(env, sample)
        value = getattr(load_settings(), key)
        assert str(value) == sample, key
        monkeypatch.delenv(env)


@pytest.mark.parametrize("line", ["redis_port = 6391.9", 'workspace = ["a", "b"]', "startup_timeout = true",
                                  'redis_port = "x"'])
def test_toml_values_of_the_wrong_type_are_refused(tmp_path, line):
    from loop.errors import ConfigError
    from loop.services.settings import load_settings

    cfg = tmp_path / "loop.toml"
    cfg.write_text(line + "\n")
    with pytest.raises(ConfigError, match=line.split(" =")[0]):
        load_settings(cfg)


def test_the_backend_login_is_on_unless_switched_off_explicitly(monkeypatch):
    s = load_settings()
    assert s.ml_backend_auth == "on" and s.backend_auth is None  # no login named: `loop up` generates one
    monkeypatch.setenv("LOOP_ML_BACKEND_AUTH", "off")
    assert load_settings().ml_backend_auth == "off"


@pytest.mark.parametrize("value", ["yes", "OFF", "", "false"])
def test_only_on_or_off_switch_the_backend_login(monkeypatch, value):
    monkeypatch.setenv("LOOP_ML_BACKEND_AUTH", value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "'ml_backend_auth'" in str(exc.value) and "$LOOP_ML_BACKEND_AUTH" in str(exc.value)
    assert "'on', 'off'" in str(exc.value)


def test_a_password_with_the_login_off_is_refused_up_front(tmp_path, monkeypatch):
    write_toml(tmp_path, 'ml_backend_auth = "off"\n')
    monkeypatch.setenv("LOOP_ML_BACKEND_PASSWORD", "secret")
    with pytest.raises(ConfigError, match="LOOP_ML_BACKEND_PASSWORD"):
        load_settings()


def test_a_named_login_defaults_its_user(monkeypatch):
    monkeypatch.setenv("LOOP_ML_BACKEND_PASSWORD", "secret")
    assert load_settings().backend_auth == ("label-studio", "secret")
    monkeypatch.setenv("LOOP_ML_BACKEND_USER", "ls")
    assert load_settings().backend_auth == ("ls", "secret")
