"""DESIGN.md §1: packages import only in the allowed direction (AST scan of every import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "workers", "operators", "storage", "dsproc")

# package -> top-level modules it must not import
FORBIDDEN: dict[str, set[str]] = {
    "api": {"celery", "kombu", "workers"},
    "workers": {"fastapi", "starlette", "uvicorn", "api"},
    "operators": {
        "celery",
        "kombu",
        "fastapi",
        "starlette",
        "boto3",
        "botocore",
        "sqlalchemy",
        "storage",
        "api",
        "workers",
    },
    "storage": {"operators", "api", "workers", "celery", "fastapi"},
}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_dependency_direction(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    violations = [
        f"{f.relative_to(ROOT)}:{line} imports {mod}"
        for f in files
        for mod, line in imported_roots(f)
        if mod in FORBIDDEN[package]
    ]
    assert violations == []


def test_scanner_sees_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import celery.app\nfrom fastapi import FastAPI\nfrom . import sibling\n")
    assert {m for m, _ in imported_roots(sample)} == {"celery", "fastapi"}
