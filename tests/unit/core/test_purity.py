"""The pure modules stay pure: no Kafka client, no HTTP client, no metrics registry."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Every module of consumer/core/ is pure: the folder is the list.
PURE = tuple(
    f"consumer.core.{path.stem}"
    for path in sorted((ROOT / "consumer" / "core").glob("*.py"))
    if path.stem != "__init__"
)
FORBIDDEN = ("confluent_kafka", "httpx", "prometheus_client")


def _source(module: str) -> Path | None:
    """The file of a project module, or None for a name that is not one (a class, say)."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(module: str) -> set[str]:
    """Every module a module's source imports, absolute, at any depth of its code."""
    source = _source(module)
    assert source is not None, module
    tree = ast.parse(source.read_text(), filename=str(source))
    package = module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            names.add(str(node.args[0].value))  # type: ignore[attr-defined]
    return names


def _dynamic_import(call: ast.Call) -> bool:
    """`importlib.import_module("x")` or `__import__("x")` with a literal name."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    literal = bool(call.args) and isinstance(call.args[0], ast.Constant)
    return name in {"import_module", "__import__"} and literal


def _is_forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)


def _closure(module: str) -> set[str]:
    """The module, its parent packages and every project module they import, transitively."""
    parts = module.split(".")
    todo = [".".join(parts[: n + 1]) for n in range(len(parts))]
    seen: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(
            name
            for name in imported_modules(current)
            if name.split(".")[0] == "consumer" and _source(name) is not None
        )
    return seen


@pytest.mark.parametrize("module", PURE)
def test_the_source_imports_no_io_library(module: str) -> None:
    for inner in _closure(module):
        bad = sorted(name for name in imported_modules(inner) if _is_forbidden(name))
        assert not bad, f"{module} reaches {bad} through {inner}"


def test_core_is_the_pure_modules() -> None:
    assert "consumer.core.planner" in PURE and len(PURE) >= 10


@pytest.mark.parametrize("module", PURE)
def test_core_imports_nothing_of_the_package_outside_it(module: str) -> None:
    outside = sorted(
        name
        for name in imported_modules(module)
        if name.startswith("consumer.") and not name.startswith("consumer.core")
    )
    assert not outside, f"{module} imports {outside}"


def test_the_checker_sees_a_forbidden_import() -> None:
    # Guard against a checker that passes everything.
    assert _is_forbidden("httpx")
    assert _is_forbidden("confluent_kafka.admin")
    assert not _is_forbidden("httpxyz")
    names = imported_modules("consumer.mem0.client")
    assert any(_is_forbidden(name) for name in names)


def test_importing_them_loads_no_io_library() -> None:
    code = (
        "import sys\n"
        f"for name in {PURE!r}:\n"
        "    __import__(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""
