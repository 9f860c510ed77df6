"""Fixtures of the curation tests: the sample project (tests/curation/sample_project.py) and a
context over it."""

from __future__ import annotations

import pytest

from tests.curation.sample_project import build_project, make_ctx


@pytest.fixture(scope="session")
def embedder():
    from loop.core.embeddings import Embedder

    return Embedder()


@pytest.fixture
def project(redis_store, tmp_path):
    return build_project(redis_store, tmp_path)


@pytest.fixture
def ctx(redis_store, tmp_path, embedder, project, fake_ls):
    return make_ctx(redis_store, tmp_path, embedder, fake_ls, project["texts"])
