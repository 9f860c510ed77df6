"""What the CLI tests share: a clean environment (no setting from the shell, no loop.toml, a fresh
workspace, a Redis port nobody listens on)."""

from __future__ import annotations

import socket
from dataclasses import fields

import pytest

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
