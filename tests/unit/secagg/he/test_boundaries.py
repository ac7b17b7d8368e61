"""Layering: only secagg/he imports TenSEAL, and secagg/ stays free of I/O stacks and clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
PACKAGES = ["secagg", "protocol", "aggregator", "clients"]
BANNED_IN_SECAGG = {"torch", "grpc", "sqlite3", "time", "random", "numpy.random", "tenseal"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def banned(names: set[str], roots: set[str]) -> set[str]:
    return {n for n in names for r in roots if n == r or n.startswith(r + ".")}


@pytest.mark.parametrize("package", PACKAGES)
def test_only_secagg_he_imports_tenseal(package: str) -> None:
    he_dir = ROOT / "secagg" / "he"
    offenders = [
        str(p.relative_to(ROOT))
        for p in sources(package)
        if he_dir not in p.parents and banned(imports(p), {"tenseal"})
    ]
    assert offenders == []


def test_secagg_has_no_io_stacks_clocks_or_ambient_randomness() -> None:
    offenders = {}
    for p in sources("secagg"):
        allowed = {"tenseal"} if (ROOT / "secagg" / "he") in p.parents else set()
        bad = banned(imports(p), BANNED_IN_SECAGG - allowed)
        if bad:
            offenders[str(p.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_tenseal_stays_inside_one_module() -> None:
    users = [p.name for p in sources("secagg") if banned(imports(p), {"tenseal"})]
    assert users == ["_native.py"]
