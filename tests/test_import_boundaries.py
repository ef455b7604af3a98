"""Import boundaries between the packages under src/ and between the product and its libraries.

The wheel ships only `tiktok_auth_service`, so it must not need the dev tools at import time; the
emulator stays a stand-alone fake of TikTok; and each third-party framework stays in the layer
that owns it. The modules are parsed, not imported, so a violation is found even in code that
no test happens to import. The order of the product's own modules is import-linter's contract
in pyproject.toml (`uv run lint-imports`); here it is only held equal to docs/design.md."""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PRODUCT = "tiktok_auth_service"
DEV_TOOLS = frozenset({"tiktok_emulator", "tiktok_auth_dev"})
# Alembic scripts (a symlink to alembic/ in a checkout), loaded by Alembic from their files;
# they use SQLAlchemy by nature and are not modules of the package.
SKIPPED = SRC / PRODUCT / "migrations"

# Third-party package -> the product modules allowed to import it (a name covers its subpackage).
LAYERS: dict[str, tuple[str, ...]] = {
    "fastapi": ("api", "app"),
    "starlette": ("api", "app"),
    # The webhook sender posts to the product's receivers; everything else HTTP is TikTok.
    "httpx": ("tiktok", "app", "ops.webhooks"),
    "sqlalchemy": ("db", "models", "repository"),
    "sqlmodel": ("db", "models", "repository"),
    "asyncpg": ("db", "models", "repository"),
    # Metric definitions and their exposition; the app and the CLI only call `metrics`.
    "prometheus_client": ("metrics",),
    # Request ids are HTTP: installed by the app, read by the access log and its filter.
    "asgi_correlation_id": ("api", "app"),
    "pythonjsonlogger": ("logs",),
}


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name
    line: int
    in_function: bool


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        # The package that relative imports start from.
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, target: str, node: ast.AST) -> None:
        self.found.append(Import(target, getattr(node, "lineno", 0), self.depth > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        self._add(target, node)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("x") and __import__("x") with a literal name count as well.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        literal = node.args[0] if node.args else None
        if (
            name in ("import_module", "__import__")
            and isinstance(literal, ast.Constant)
            and isinstance(literal.value, str)
            and not literal.value.startswith(".")
        ):
            self._add(literal.value, node)
        self.generic_visit(node)


def imports(source: str, module: str, is_package: bool = False) -> list[Import]:
    collector = _Collector(module, is_package)
    collector.visit(ast.parse(source))
    return collector.found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Why each offending import in `source` (the text of `module`) crosses a boundary."""
    top = module.split(".")[0]
    problems = []
    for found in imports(source, module, is_package):
        target = found.target.split(".")[0]
        reason = None
        if top == PRODUCT and target in DEV_TOOLS:
            # Only the CLI's dev commands may reach the tools, and only when they run.
            if module != f"{PRODUCT}.cli" or not found.in_function:
                reason = "the product must not need the dev tools (cli.py: inside a function)"
        elif top == "tiktok_emulator" and target in {PRODUCT, "tiktok_auth_dev"}:
            reason = "the emulator stands alone"
        elif top == PRODUCT and target in LAYERS:
            allowed = tuple(f"{PRODUCT}.{name}" for name in LAYERS[target])
            if not _within(module, allowed):
                reason = f"{target} belongs in {', '.join(LAYERS[target])}"
        if reason:
            problems.append(f"{module}:{found.line} imports {found.target}: {reason}")
    return problems


def _modules() -> list[tuple[Path, str, bool]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(SKIPPED):
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found.append((path, ".".join(parts), is_package))
    return found


def test_the_packages_under_src_are_all_checked() -> None:
    tops = {module.split(".")[0] for _, module, _ in _modules()}
    assert {PRODUCT, *DEV_TOOLS} <= tops
    assert f"{PRODUCT}.cli" in {module for _, module, _ in _modules()}


def test_imports_stay_within_their_boundaries() -> None:
    offenders = [
        problem
        for path, module, is_package in _modules()
        for problem in violations(path.read_text(), module, is_package)
    ]
    assert not offenders, "import boundary violations:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("module", "source", "offending"),
    [
        (f"{PRODUCT}.service", "import tiktok_emulator", "tiktok_emulator"),
        (
            f"{PRODUCT}.service",
            "def f():\n    from tiktok_auth_dev import stack",
            "tiktok_auth_dev",
        ),
        (f"{PRODUCT}.cli", "from tiktok_emulator import serve", "tiktok_emulator"),
        (
            f"{PRODUCT}.app",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tiktok_auth_dev",
            "tiktok_auth_dev",
        ),
        (
            f"{PRODUCT}.service",
            "import importlib\nimportlib.import_module('tiktok_emulator')",
            "tiktok_emulator",
        ),
        ("tiktok_emulator.state", "from tiktok_auth_service.crypto import x", PRODUCT),
        ("tiktok_emulator.state", "from tiktok_auth_dev import stack", "tiktok_auth_dev"),
        (f"{PRODUCT}.service", "from fastapi import HTTPException", "fastapi"),
        (f"{PRODUCT}.repository_helpers", "import sqlalchemy", "sqlalchemy"),
        (f"{PRODUCT}.tiktok.client", "from starlette.requests import Request", "starlette"),
        (f"{PRODUCT}.api.tokens", "import httpx", "httpx"),
        (f"{PRODUCT}.tokens.service", "def f():\n    import asyncpg", "asyncpg"),
        (f"{PRODUCT}.api.health", "from prometheus_client import generate_latest", "prometheus"),
        (f"{PRODUCT}.grants.worker", "from asgi_correlation_id import correlation_id", "asgi_corr"),
        (f"{PRODUCT}.cli", "from pythonjsonlogger.json import JsonFormatter", "pythonjson"),
    ],
)
def test_checker_catches(module: str, source: str, offending: str) -> None:
    problems = violations(source, module)
    assert len(problems) == 1 and f"imports {offending}" in problems[0], problems


@pytest.mark.parametrize(
    ("module", "source", "is_package"),
    [
        (f"{PRODUCT}.cli", "def dev():\n    from tiktok_auth_dev import stack", False),
        (f"{PRODUCT}.api.tokens", "from fastapi import APIRouter", False),
        (f"{PRODUCT}.api", "from starlette.responses import Response", True),
        (f"{PRODUCT}.app", "import httpx\nfrom fastapi import FastAPI", False),
        (f"{PRODUCT}.tiktok.client", "import httpx", False),
        (f"{PRODUCT}.repository.grants", "from sqlalchemy import select", False),
        (f"{PRODUCT}.models", "from sqlmodel import Field", False),
        (f"{PRODUCT}.metrics", "from prometheus_client import Counter", False),
        (f"{PRODUCT}.api.observability", "from asgi_correlation_id import correlation_id", False),
        (f"{PRODUCT}.logs", "from pythonjsonlogger.orjson import OrjsonFormatter", False),
        ("tiktok_emulator.app", "from . import state\nfrom .state import State", False),
        ("tiktok_auth_dev.stack", "from tiktok_emulator import serve", False),
    ],
)
def test_checker_allows(module: str, source: str, is_package: bool) -> None:
    assert violations(source, module, is_package) == []


def test_relative_imports_resolve_against_the_package() -> None:
    (found,) = imports("from ..db import migrate", f"{PRODUCT}.api.tokens")
    assert found.target == f"{PRODUCT}.db"
    (found,) = imports("from . import deps", f"{PRODUCT}.api", is_package=True)
    assert found.target == f"{PRODUCT}.api"


def _contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    assert contract["containers"] == [PRODUCT]
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def _documented_layers() -> list[set[str]]:
    """The layers of docs/design.md's Layout table: its rows with a layer number, in order."""
    text = (ROOT / "docs" / "design.md").read_text()
    layers: dict[int, set[str]] = {}
    for number, where in re.findall(r"^\| (\d+) \| ([^|]+) \|", text, re.MULTILINE):
        for path in re.findall(r"`([^`]+)`", where):
            name = path.removeprefix(f"src/{PRODUCT}/").removesuffix("/").removesuffix(".py")
            layers.setdefault(int(number), set()).add(name)
    assert sorted(layers) == list(range(1, len(layers) + 1)), "layer numbers run 1, 2, 3, ..."
    return [layers[number] for number in sorted(layers)]


def test_the_design_pages_layout_is_the_contract() -> None:
    assert _documented_layers() == _contract_layers()
