"""The CLI starts fast: importing it pulls in no numpy, scikit-learn, torch or Label Studio SDK
(bench/cli_startup.py times it), and the defaults it shows without them are its owners'."""

from __future__ import annotations

import os
import subprocess
import sys

from loop.cli import defaults
from tests.helpers import REPO

HEAVY = ("numpy", "sklearn", "scipy", "torch", "sentence_transformers", "label_studio_sdk", "pandas", "modAL")


def test_importing_the_cli_imports_no_heavy_library():
    code = (f"import loop.cli.main, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", "imported at `loop --help`: " + proc.stdout


def test_help_renders_without_heavy_libraries():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom loop.cli.main import app\n"
            "for args in (['--help'], ['status', '--help'], ['next-round', '--help'], ['validate', '--help'],\n"
            "             ['simulate', '--help'], ['aggregate', '--help'], ['credentials', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_cli_defaults_are_their_owners():
    from loop.core.relabel import DEFAULT_MODE
    from loop.core.strategies import DEFAULT_STRATEGY, STRATEGIES
    from loop.curation.validate import MIN_CHARS, MINORITY_FRACTION, NEAR_THRESHOLD
    from loop.labels.aggregation import DEFAULT_METHOD, METHODS

    assert defaults.STRATEGY_NAMES == tuple(STRATEGIES)
    assert defaults.DEFAULT_STRATEGY == DEFAULT_STRATEGY
    assert defaults.DEFAULT_RELABEL == DEFAULT_MODE
    assert defaults.AGGREGATION_METHODS == tuple(METHODS)
    assert defaults.DEFAULT_METHOD == DEFAULT_METHOD
    assert (defaults.NEAR_THRESHOLD, defaults.MINORITY_FRACTION, defaults.MIN_CHARS) == (
        NEAR_THRESHOLD, MINORITY_FRACTION, MIN_CHARS)


def test_the_options_show_those_defaults():
    import typer

    from loop.cli.main import app

    root = typer.main.get_command(app)

    def default(command: str, option: str):
        return next(p.default for p in root.commands[command].params if p.name == option)

    assert default("next-round", "strategy") == defaults.DEFAULT_STRATEGY
    assert default("simulate", "strategy") == f"{defaults.DEFAULT_STRATEGY},random"
    assert default("next-round", "relabel") == default("simulate", "relabel") == defaults.DEFAULT_RELABEL
    assert default("aggregate", "method") == default("agreement", "method") == defaults.DEFAULT_METHOD
    assert default("validate", "near_threshold") == default("export", "near_threshold") == defaults.NEAR_THRESHOLD
    assert default("validate", "minority_fraction") == defaults.MINORITY_FRACTION
    assert default("validate", "min_chars") == defaults.MIN_CHARS
