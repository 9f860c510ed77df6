"""The CLI surface: help everywhere, and clean one-line errors when Redis is not there."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from loop.cli.main import app
from loop.services.settings import Settings
from tests.helpers import REPO

ROOT = typer.main.get_command(app)


def walk(cmd, path: tuple[str, ...] = ()):
    """Every command and group under `cmd` (Typer's click commands; groups have `.commands`)."""
    yield path, cmd
    if getattr(cmd, "commands", None):
        for name, sub in cmd.commands.items():
            yield from walk(sub, path + (name,))


COMMANDS = list(walk(ROOT))
IDS = [" ".join(p) or "loop" for p, _ in COMMANDS]


DOCUMENTED = {"", "up", "down", "ps", "credentials", "demo", "init", "annotators", "annotators add", "annotators list",
              "next-round", "status", "predictions", "predictions push", "predictions prune", "adjudicate", "accept",
              "agreement", "aggregate", "guidelines", "guidelines show", "guidelines bump", "simulate",
              "validate", "export"}
DOCUMENTED |= {"audit", "audit start", "audit report"}
DOCUMENTED |= {"release", "releases", "releases list", "releases diff"}
DOCUMENTED |= {"gold", "gold add", "gold promote", "gold list"}
DOCUMENTED |= {"coverage"}


def test_the_tree_has_exactly_the_documented_commands():
    assert {" ".join(p) for p, _ in COMMANDS} == DOCUMENTED


def test_every_command_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name in sorted(DOCUMENTED - {""}):
        assert f"loop {name}" in readme, name


def option_default(path: str, option: str):
    cmd = dict(COMMANDS)[tuple(path.split())]
    return next(p.default for p in cmd.params if p.name == option)


@pytest.mark.parametrize("path", ["agreement", "aggregate"])
def test_aggregation_defaults_to_the_one_default_method(path):
    from loop.labels.aggregation import DEFAULT_METHOD

    assert option_default(path, "method") == DEFAULT_METHOD


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_every_command_has_help(path, cmd):
    assert (cmd.help or "").strip(), path
    assert (cmd.get_short_help_str(limit=200) or "").strip(), path


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_every_option_and_argument_has_help(path, cmd):
    for param in cmd.params:
        if param.name == "help" or getattr(param, "hidden", False):
            continue
        assert (getattr(param, "help", None) or "").strip(), f"{' '.join(path)}: {param.name}"


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=IDS)
def test_help_renders(path, cmd):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    words = re.findall(r"[A-Za-z]{4,}", (cmd.help or "").strip().splitlines()[0])[:3]
    assert words and all(w in result.output for w in words), (words, result.output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_redis_env(monkeypatch, tmp_path):
    for f in fields(Settings):
        monkeypatch.delenv(f.metadata["env"], raising=False)
    monkeypatch.delenv("LOOP_CONFIG", raising=False)
    port = free_port()
    monkeypatch.setenv("LOOP_REDIS_PORT", str(port))
    monkeypatch.setenv("LOOP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)  # no loop.toml from the repo
    return port


def assert_one_clean_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:"), lines[0]
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


def test_status_without_redis(no_redis_env):
    result = CliRunner().invoke(app, ["status"])
    assert_one_clean_error(result, "Redis", "loop up", str(no_redis_env))
    assert result.stdout == ""


def test_status_json_without_redis(no_redis_env):
    result = CliRunner().invoke(app, ["status", "--json"])
    assert_one_clean_error(result, "Redis", "loop up")
    assert result.stdout == ""  # nothing half-written to stdout for a script to misparse


def test_next_round_checks_options_before_contacting_redis(no_redis_env):
    result = CliRunner().invoke(app, ["next-round", "--annotators", "a", "--overlap", "2"])
    assert_one_clean_error(result, "--overlap is 2")


def test_next_round_without_redis(no_redis_env):
    result = CliRunner().invoke(app, ["next-round", "--annotators", "a,b", "--overlap", "2"])
    assert_one_clean_error(result, "Redis", "loop up")


def test_annotators_list_without_redis(no_redis_env):
    result = CliRunner().invoke(app, ["annotators", "list"])
    assert_one_clean_error(result, "Redis", "loop up")


def test_next_round_requires_annotators():
    result = CliRunner().invoke(app, ["next-round"])
    assert result.exit_code == 2
    assert "--annotators" in result.output


def test_bad_config_is_one_error_line(no_redis_env, tmp_path):
    (tmp_path / "loop.toml").write_text("redis_prot = 1\n")
    result = CliRunner().invoke(app, ["status"])
    assert_one_clean_error(result, "redis_prot")


def test_status_without_redis_as_a_real_process(no_redis_env):
    """The installed entry point: exit code 1 and exactly one Error line on stderr."""
    proc = subprocess.run([sys.executable, "-m", "loop.cli.main", "status"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), proc.stderr
    assert "Redis" in lines[0] and "loop up" in lines[0]
