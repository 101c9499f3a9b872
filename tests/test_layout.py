"""The tests' layout: no test module (nor a script or benchmark) imports another
``test_`` module; what tests share lives in tests/fixtures/ (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _test_module_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        mods = []
        if isinstance(node, ast.ImportFrom):
            mods = [("." * node.level) + (node.module or "")]
            mods += [a.name for a in node.names] if node.level else []
        elif isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        names += [m for m in mods if m.rsplit(".", 1)[-1].startswith("test_")]
    return names


def test_no_module_imports_a_test_module() -> None:
    found = {
        str(p.relative_to(ROOT)): bad
        for d in ("tests", "scripts", "benchmarks")
        for p in sorted((ROOT / d).rglob("*.py"))
        if ".venv" not in p.parts and (bad := _test_module_imports(p))
    }
    assert found == {}, found
