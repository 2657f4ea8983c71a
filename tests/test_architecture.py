"""The package's layout rules, read from its source: layers, private names, file sizes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cancergpt_scvi"
FILES = sorted(PACKAGE.rglob("*.py"))
#: The package's own private top-level modules, shared by every subpackage.
SHARED_PRIVATE = {"_argument_types", "_constants", "_extras", "_listing", "_loading", "_saving"}
#: Subpackages that the comparisons against baselines build on, never the other way.
BELOW_BENCHMARK = ("survival", "drug_response", "annotation", "model", "data", "datasets")
MAX_LINES = 600


def _subpackage(path: Path) -> str:
    """``survival`` for ``cancergpt_scvi/survival/_model.py``; the module name at top level."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text())
    package = ["cancergpt_scvi", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def _package_imports(path: Path) -> list[tuple[list[str], list[str]]]:
    """Imports of the package's own modules, as path parts below ``cancergpt_scvi``."""
    return [
        (module.split(".")[1:], names)
        for module, names in _imports(path)
        if module == "cancergpt_scvi" or module.startswith("cancergpt_scvi.")
    ]


def test_the_scan_sees_the_package():
    # guards the rules below against passing on an empty or misread tree
    assert len(FILES) > 50
    model = PACKAGE / "annotation" / "_model.py"
    assert (["model"], ["CancerGPTModel"]) in _package_imports(model)


@pytest.mark.parametrize("subpackage", BELOW_BENCHMARK)
def test_heads_and_core_never_import_the_benchmarks(subpackage):
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in (PACKAGE / subpackage).rglob("*.py")
        for parts, _ in _package_imports(path)
        if parts[:1] == ["benchmark"]
    ]
    assert offenders == []


def test_no_private_name_is_imported_from_another_subpackage():
    offenders = []
    for path in FILES:
        own = _subpackage(path)
        for parts, names in _package_imports(path):
            if not parts or parts[0] == own or parts[0] in SHARED_PRIVATE:
                continue
            private = [p for p in parts if p.startswith("_")]
            private += [n for n in names if n.startswith("_")]
            if private:
                offenders.append(f"{path.relative_to(PACKAGE)}: {'.'.join(parts)} {private}")
    assert offenders == []


def _private_definitions(path: Path) -> set[str]:
    """Names of the ``_private`` functions and methods that ``path`` defines."""
    return {
        node.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("_")
        and not node.name.startswith("__")
    }


def test_no_private_method_of_another_subpackage_is_called():
    # e.g. annotation/ calling ``encoder._registered_genes_match()`` of a CancerGPTModel
    defined: dict[str, set[str]] = {}
    for path in FILES:
        defined.setdefault(_subpackage(path), set()).update(_private_definitions(path))
    offenders = []
    for path in FILES:
        own = _subpackage(path)
        others = set().union(*(names for sub, names in defined.items() if sub != own))
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in others - defined[own]
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_subpackages_import_one_another_without_a_cycle():
    graph: dict[str, set[str]] = {}
    for path in FILES:
        own = _subpackage(path)
        for parts, _ in _package_imports(path):
            if parts and parts[0] != own and parts[0] not in SHARED_PRIVATE:
                graph.setdefault(own, set()).add(parts[0])

    def cycle_from(node: str, trail: list[str]) -> list[str] | None:
        if node in trail:
            return [*trail[trail.index(node) :], node]
        for nxt in sorted(graph.get(node, ())):
            found = cycle_from(nxt, [*trail, node])
            if found:
                return found
        return None

    cycles = [c for start in sorted(graph) if (c := cycle_from(start, []))]
    assert cycles == []


def test_no_file_is_over_the_size_limit():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in FILES}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
