"""The package's layers (DESIGN): imports run one way, top to bottom.

cli -> stack/run -> {calibrate, register, normalize, tasks} -> {kernels, io}.
Every module under stackengine/ is parsed with ``ast`` (nothing is imported):
all its import statements count, at module level or inside functions, and
``from X import name`` counts as importing ``X.name`` when that is a module
of the package, else as importing ``X`` (a package's ``__init__``).

Imports under ``if TYPE_CHECKING:`` never run, so the cycle check leaves them
out; the layer rules count them too. ``importlib.import_module`` is followed
when its argument is a literal string only (frames.py's reader lookup builds
``.io.<kind>``, a downward import, at run time).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stackengine"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "stackengine.io.fits"
    target: str  # the imported module: "stackengine.errors", "dask.array", ...
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _absolute(package: list[str], level: int, name: str | None) -> str:
    """``from <level dots><name>`` seen from a module of ``package``, as an absolute name."""
    if level == 0:
        return name or ""
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _targets(package: list[str], node: ast.AST) -> list[str]:
    """The modules one import statement (or literal import_module call) names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _absolute(package, node.level, node.module)
        return [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names
        ]
    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module"):
        arg = node.args[0] if node.args else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            name = arg.value.lstrip(".")
            return [_absolute(package, len(arg.value) - len(name), name)]
    return []


def imports_in(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    """Every import in ``module``'s source, once per line and target."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    tree = ast.parse(source)
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found = [
        Import(module, target, node.lineno, id(node) in guarded)
        for node in ast.walk(tree)
        for target in _targets(package, node)
    ]
    return sorted(set(found), key=lambda imp: (imp.line, imp.target))


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    return imports_in(module, path.read_text(), is_package=path.name == "__init__.py")


IMPORTS = [imp for module in MODULES for imp in imports_of(module)]


def _under(name: str, *prefixes: str) -> bool:
    """``name`` is one of ``prefixes`` or inside one of them."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _internal(imp: Import) -> bool:
    return _under(imp.target, "stackengine")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search (none: the graph is acyclic)."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def _report(violations: list[Import], rule: str) -> str:
    return f"{len(violations)} imports break the rule: {rule}\n" + "\n".join(
        f"  {imp}" for imp in violations
    )


# --- the graph builder itself -------------------------------------------------------


def test_builder_resolves_every_kind_of_import() -> None:
    source = """
import dask.array as da
from typing import TYPE_CHECKING
from . import measure, not_a_module
from ..errors import ParameterError, StackError
def f():
    from .plan import plan_normalization
if TYPE_CHECKING:
    from ..frames import FrameStack
importlib.import_module(".io.fits", __package__)
"""
    found = {
        (imp.target, imp.type_only) for imp in imports_in("stackengine.normalize.example", source)
    }
    assert found == {
        ("dask.array", False),
        ("typing", False),
        ("stackengine.normalize.measure", False),  # from . import <submodule>
        ("stackengine.normalize", False),  # from . import <name of the __init__>
        ("stackengine.errors", False),
        ("stackengine.normalize.plan", False),  # inside a function
        ("stackengine.frames", True),  # under TYPE_CHECKING
        ("stackengine.normalize.io.fits", False),
    }
    in_package = imports_in("stackengine.io", "from .remote import x", is_package=True)
    assert [imp.target for imp in in_package] == ["stackengine.io.remote"]


def test_builder_reads_the_package() -> None:
    found = {(imp.source, imp.target) for imp in IMPORTS}
    expected = {
        ("stackengine.normalize.plan", "stackengine.normalize.model"),
        ("stackengine.normalize.plan", "stackengine.normalize.photometric"),  # in a function
        ("stackengine.progress", "stackengine.progress_cluster"),  # lazy, deliberate
        ("stackengine.progress_cluster", "stackengine.progress_display"),
        ("stackengine", "stackengine.normalize"),  # a package: its __init__
    }
    assert expected <= found, sorted(expected - found)
    assert "stackengine.io" in MODULES and "stackengine.kernels.engine" in MODULES


def test_find_cycles_reports_the_modules() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


# --- the rules ----------------------------------------------------------------------


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], int] = {}
    for imp in IMPORTS:
        if _internal(imp) and not imp.type_only:
            graph.setdefault(imp.source, set()).add(imp.target)
            lines.setdefault((imp.source, imp.target), imp.line)
    cycles = find_cycles(graph)
    shown = [
        " -> ".join(f"{a} (line {lines[a, b]})" for a, b in pairwise(c)) + f" -> {c[-1]}"
        for c in cycles
    ]
    assert not cycles, f"{len(cycles)} import cycles:\n  " + "\n  ".join(shown)


def test_io_imports_only_io_errors_version_kernels() -> None:
    allowed = (
        "stackengine.io",
        "stackengine.errors",
        "stackengine._version",
        "stackengine.kernels",
    )
    violations = [
        imp
        for imp in IMPORTS
        if _under(imp.source, "stackengine.io")
        and _internal(imp)
        and not _under(imp.target, *allowed)
    ]
    rule = "stackengine/io/ imports only io.*, errors, _version and kernels.*"
    assert not violations, _report(violations, rule)


def test_kernels_import_only_kernels_numba_cache_errors() -> None:
    allowed = ("stackengine.kernels", "stackengine._numba_cache", "stackengine.errors")
    violations = [
        imp
        for imp in IMPORTS
        if _under(imp.source, "stackengine.kernels")
        and _internal(imp)
        and not _under(imp.target, *allowed)
    ]
    rule = "stackengine/kernels/ imports only kernels.*, _numba_cache and errors"
    assert not violations, _report(violations, rule)


def test_kernels_know_nothing_of_dask_or_xarray() -> None:
    violations = [
        imp
        for imp in IMPORTS
        if _under(imp.source, "stackengine.kernels")
        and _under(imp.target, "dask", "distributed", "xarray")
    ]
    rule = "stackengine/kernels/ imports neither dask (distributed) nor xarray"
    assert not violations, _report(violations, rule)


def test_package_never_imports_benchmarks() -> None:
    violations = [imp for imp in IMPORTS if _under(imp.target, "benchmarks")]
    assert not violations, _report(violations, "no module of the package imports benchmarks")


# --- no attributes on dask arrays, no registries keyed by dask names ----------------

SETATTR = re.compile(r"\bsetattr\(")
REGISTRY = re.compile(r"^\w+\s*(?::[^=\n]*)?=\s*(?:weakref\.)?WeakValueDictionary\b|\b_SOURCES\b")


def _grep(pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in MODULES.values()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]


def test_no_setattr_on_dask_arrays() -> None:
    """Facts about an array travel with it explicitly, not as attributes set on it."""
    hits = _grep(SETATTR)
    assert not hits, "setattr( in the package (attributes on dask arrays):\n  " + "\n  ".join(hits)


def test_no_registry_keyed_by_dask_names() -> None:
    """No module-level WeakValueDictionary / _SOURCES mapping dask names to objects."""
    hits = _grep(REGISTRY)
    assert not hits, "registries keyed by dask names:\n  " + "\n  ".join(hits)
