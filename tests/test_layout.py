"""The architecture as a test: imports point down the layers, never up, and form no cycle.

    core  <  labels  <  curation, services  <  workflows  <  cli, ml_backend

`core` is pure (no services, no workflows); `labels` and `curation` never touch Redis or Label
Studio; only `workflows` combine services with the rest; the ML backend never imports the process
manager (`loop.services.stack`) nor the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

# What each part of the code base may import from loop (itself included); errors.py is shared by all.
ALLOWED = {
    "loop.core": {"loop.core"},
    "loop.labels": {"loop.core", "loop.labels"},
    "loop.curation": {"loop.core", "loop.labels", "loop.curation"},
    "loop.services": {"loop.core", "loop.labels", "loop.services"},
    "loop.workflows": {"loop.core", "loop.labels", "loop.curation", "loop.services", "loop.workflows"},
    "loop.cli": {"loop.core", "loop.labels", "loop.curation", "loop.services", "loop.workflows", "loop.cli"},
    "ml_backend": {"loop.core", "loop.labels", "loop.services", "loop.workflows", "ml_backend"},
}
FORBIDDEN = {"ml_backend": {"loop.services.stack", "loop.cli"}}


def modules() -> dict[str, Path]:
    out = {}
    for package in ("loop", "ml_backend"):
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path) -> set[str]:
    """Every loop / ml_backend module a file imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    known = modules()
    return {name for name in found if name in known and name.split(".")[0] in ("loop", "ml_backend")}


def part(module: str) -> str | None:
    return next((p for p in ALLOWED if module == p or module.startswith(p + ".")), None)


MODULES = modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part(m)))
def test_imports_point_down_the_layers(module):
    mine = part(module)
    allowed = ALLOWED[mine] | {"loop", "loop.errors"}
    for target in imports(MODULES[module]):
        assert part(target) in allowed or target in allowed, f"{module} imports {target}"
        for banned in FORBIDDEN.get(mine, ()):
            assert not (target == banned or target.startswith(banned + ".")), f"{module} imports {target}"


def test_every_module_belongs_to_a_layer():
    assert sorted(m for m in MODULES if part(m) is None) == ["loop", "loop.errors"]


def test_there_is_no_import_cycle():
    graph = {m: {t for t in imports(p) if t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_integration_tests_never_share_an_annotator_name():
    """The integration tests share one Label Studio for the session: an annotator added by two
    tests makes the second fail ("exists already") depending on the order they run in."""
    owner: dict[str, str] = {}
    for path in sorted((REPO / "tests" / "integration").glob("test_*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PEOPLE" for t in node.targets) \
                    and isinstance(node.value, ast.Dict):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            literal = isinstance(node, ast.Call) and all(isinstance(a, ast.Constant) for a in node.args[:3])
            if literal and len(node.args) >= 3 and [a.value for a in node.args[:2]] == ["annotators", "add"]:
                names.add(node.args[2].value)
        for name in names:
            assert name not in owner, f"{name!r} is added by both {owner[name]} and {path.name}"
            owner[name] = path.name
    assert len(owner) > 10  # the scan found the tests' annotators
