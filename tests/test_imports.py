"""The import graph of ``gateway``: no cycle, and no import up the stage order.

Every import counts, wherever it is written: at the top of a module, inside a function (an
import moved there to dodge a cycle is still the dependency), or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

# The stages, lowest first: a module may import its own stage or a lower one, never a higher.
# A package's name stands for all its modules; a top-level module is named alone. The pure
# stages (parsing, validation: no ledger, no files but the one read) sit lowest; then what
# holds state (config, storage, ledger), then the stages that use it, then the edges.
STAGES: list[tuple[str, ...]] = [
    # base: what every stage uses, importing no stage
    ("gateway.errors", "gateway.findings", "gateway.model", "gateway.countries",
     "gateway.textsafe", "gateway.caching", "gateway.crash", "gateway.schemas",
     "gateway.turns"),
    ("gateway.parse",),
    ("gateway.validate",),
    # config checks each partner's mapping when it loads (parse); storage's Layout is built
    # from the config; settings is the reader config's sections are declared with.
    ("gateway.settings", "gateway.config_service", "gateway.config", "gateway.storage"),
    ("gateway.ledger",),
    ("gateway.inbox",),
    ("gateway.licensing",),
    ("gateway.outputs",),
    ("gateway.service",),
    ("gateway.admin",),
    ("gateway.cli", "gateway.cli_ops", "gateway.cli_access"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The gateway modules that ``path`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from gateway.admin import queries`` imports the module gateway.admin.queries
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m == "gateway" or m.startswith("gateway.")} - {name}


def stage(name: str) -> int:
    for level, members in enumerate(STAGES):
        if any(name == m or name.startswith(m + ".") for m in members):
            return level
    raise AssertionError(f"{name} is in no stage: add it to STAGES in tests/test_imports.py")


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(path, name, known) for name, path in found.items()}


def test_every_module_has_a_stage() -> None:
    for name in graph():
        if name != "gateway":
            stage(name)


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{name} (stage {stage(name)}) imports {target} (stage {stage(target)})"
        for name, targets in edges.items() if name != "gateway"
        for target in targets if target != "gateway" and stage(target) > stage(name))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges.get(name, ())):
            if state.get(target) == "open":
                found.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def test_no_import_goes_up_the_stage_order() -> None:
    assert upward(graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    edges = {"gateway.licensing.decide": {"gateway.service.runner", "gateway.ledger.store"},
             "gateway.ledger.store": {"gateway.ledger.db"},
             "gateway.ledger.db": {"gateway.ledger.store"}}
    assert upward(edges) == ["gateway.licensing.decide (stage 6) imports "
                             "gateway.service.runner (stage 8)"]
    assert cycles(edges) == [["gateway.ledger.db", "gateway.ledger.store", "gateway.ledger.db"]]


def test_packages_re_export_nothing() -> None:
    """A package's ``__init__`` imports and defines nothing: every import names the module it
    uses (``from gateway.inbox.local import LocalInbox``), never a package's re-export."""
    code = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    for path in sorted(PACKAGE.rglob("__init__.py")):
        tree = ast.parse(path.read_text("utf-8"))
        assert not any(isinstance(node, code) for node in ast.walk(tree)), path


@pytest.mark.parametrize(("source", "expected"), [
    ("import gateway.ledger.store\n", {"gateway.ledger.store"}),
    ("from gateway.admin import queries\n", {"gateway.admin.queries"}),
    ("def f():\n    from gateway.service.runner import Runner\n", {"gateway.service.runner"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.config import Config\n",
     {"gateway.config"}),
    ("from . import base\nfrom .local import LocalInbox\n",
     {"gateway.inbox.base", "gateway.inbox.local"}),
])
def test_imports_are_found_wherever_they_are_written(
        tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    known = {"gateway.ledger.store", "gateway.admin.queries", "gateway.service.runner",
             "gateway.config", "gateway.inbox.base", "gateway.inbox.local"}
    assert imports(path, "gateway.inbox.probe", known) == expected
