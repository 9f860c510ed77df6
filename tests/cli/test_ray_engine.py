"""`--engine`: which engine runs by default, and the one Error line when Ray cannot serve, given
before any service is contacted (the Redis port of `clean_env` has no server behind it). The
engine on a real cluster: tests/integration/test_ray.py."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from typer.testing import CliRunner

from loop.cli.main import app
from loop.errors import ConfigError
from loop.services.ray_engine import resolve_engine, scorer
from loop.services.settings import Settings
from tests.cli.conftest import one_error_line
from tests.helpers import REPO

DATA = str(REPO / "examples" / "support_tickets.jsonl")


def test_the_engine_is_ray_when_a_cluster_is_named_and_local_otherwise():
    assert resolve_engine(Settings(), None) == "local"
    assert resolve_engine(Settings(ray_address="10.0.0.5:6379"), None) == "ray"
    assert resolve_engine(Settings(ray_address="10.0.0.5:6379"), "local") == "local"
    assert resolve_engine(Settings(), "ray") == "ray"
    with pytest.raises(ConfigError, match="'spark'; choose one of local, ray"):
        resolve_engine(Settings(), "spark")


def test_the_local_engine_scores_with_the_classifier_itself():
    classifier = object()
    assert scorer(Settings(), None)(classifier) is classifier
    assert scorer(Settings(), "local")(None) is None


@pytest.mark.parametrize("command", [
    ["init", DATA, "--labels", "a,b"],
    ["next-round", "--annotators", "ann", "--overlap", "1"],
])
def test_engine_ray_without_ray_installed_is_one_error_line_naming_the_extra(clean_env, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    result = CliRunner().invoke(app, [*command, "--engine", "ray"])
    one_error_line(result, "needs Ray", "pip install 'loop-al[ray]'")


def test_engine_ray_without_a_cluster_named_is_one_error_line(clean_env):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed here (pip install 'loop-al[ray]')")
    result = CliRunner().invoke(app, ["init", DATA, "--labels", "a,b", "--engine", "ray"])
    one_error_line(result, "LOOP_RAY_ADDRESS")


def test_an_unknown_engine_is_one_error_line(clean_env):
    result = CliRunner().invoke(app, ["init", DATA, "--labels", "a,b", "--engine", "spark"])
    one_error_line(result, "--engine is 'spark'")
