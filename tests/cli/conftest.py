"""What the CLI tests share: a clean environment (no setting from the shell, no loop.toml, a fresh
workspace, a Redis port nobody listens on)."""

from __future__ import annotations

import json
import socket
from dataclasses import fields

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from loop.services.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """The workspace folder (not created) of a run with nothing set, in an empty current directory."""
    for f in fields(Settings):
        monkeypatch.delenv(f.metadata["env"], raising=False)
    monkeypatch.delenv("LOOP_CONFIG", raising=False)
    monkeypatch.setenv("LOOP_REDIS_PORT", str(free_port()))
    monkeypatch.setenv("LOOP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "ws"


def one_error_line(result, *fragments: str) -> str:
    """The command failed with exit code 1 and exactly one 'Error: ...' line holding `fragments`."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp_path, with the workspace (and so the embedding cache) in it."""
    monkeypatch.setenv("LOOP_WORKSPACE", str(tmp_path / "ws"))
    return tmp_path


def write(path, rows):
    """A JSONL file of `rows`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(*args):
    return CliRunner().invoke(app, list(args))
