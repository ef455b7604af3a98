"""The wheel is what gets deployed: build it, install it into a fresh virtual environment and run
its console script there, away from the source tree (which the editable install would expose)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import asyncpg
import pytest
from sqlmodel import SQLModel

import tiktok_auth_service.models  # noqa: F401  (registers the tables on SQLModel.metadata)

# Builds and installs the wheel: among the long runs.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tiktok_auth_service"
DEV_TOOLS = ("tiktok_emulator", "tiktok_auth_dev")
TIMEOUT = 120

# uv sets UV to its own path under `uv run`; otherwise take the one on PATH.
UV = os.environ.get("UV") or shutil.which("uv")

# The child processes must see neither this test run's environment nor the checkout's src/.
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
}


def _uv(*args: str, env: dict[str, str] | None = None) -> None:
    """Run uv from its cache first (fast, no network needed), then again with the index."""
    if UV is None:
        pytest.fail("uv is not on PATH: the packaging test builds and installs with uv")
    attempts = []
    for extra in (["--offline"], []):
        result = subprocess.run(
            [UV, *args, *extra],
            capture_output=True,
            text=True,
            env={**CLEAN_ENV, **(env or {})},
            timeout=TIMEOUT,
            check=False,
        )
        if result.returncode == 0:
            return
        attempts.append(f"$ uv {' '.join([*args, *extra])}\n{result.stderr.strip()}")
    pytest.fail("\n\n".join(attempts))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _uv("build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT))
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment: the locked runtime dependencies (as the Dockerfile installs them),
    then the wheel, whose own requirements must be met by them (no network offline)."""
    env = tmp_path_factory.mktemp("venv") / "env"
    _uv(
        "sync",
        "--project",
        str(ROOT),
        "--frozen",
        "--no-dev",
        "--no-install-project",
        "--quiet",
        "--python",
        sys.executable,
        env={"UV_PROJECT_ENVIRONMENT": str(env)},
    )
    _uv("pip", "install", "--quiet", "--python", str(env / "bin" / "python"), str(wheel))
    return env


def test_wheel_ships_the_migrations_and_only_the_product(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert not top & set(DEV_TOOLS), f"development tooling in the wheel: {sorted(top)}"
    assert {t for t in top if not t.endswith(".dist-info")} == {PACKAGE}, sorted(top)

    expected = {
        f"{PACKAGE}/migrations/{path.relative_to(ROOT / 'alembic').as_posix()}"
        for path in (ROOT / "alembic").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    shipped = {name for name in names if name.startswith(f"{PACKAGE}/migrations/")}
    assert f"{PACKAGE}/migrations/env.py" in expected
    assert any(name.startswith(f"{PACKAGE}/migrations/versions/") for name in expected)
    assert shipped == expected, f"missing {expected - shipped}, unexpected {shipped - expected}"
    assert len(names) == len(set(names)), "a file is in the wheel twice"


def test_wheel_ships_the_connect_kit(wheel: Path) -> None:
    """/connect.js and /connect.d.ts are served from the package's files."""
    static = ROOT / "src" / PACKAGE / "api" / "static"
    with zipfile.ZipFile(wheel) as archive:
        for name in ("connect.js", "connect.d.ts"):
            shipped = archive.read(f"{PACKAGE}/api/static/{name}")
            assert shipped == (static / name).read_bytes(), name


def test_installed_package_comes_from_the_wheel(venv: Path) -> None:
    probe = (
        "import importlib.resources as r, tiktok_auth_service as p;"
        "print(p.__file__); print((r.files(p) / 'migrations' / 'env.py').is_file())"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        cwd=venv,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    location, found = result.stdout.split()
    assert Path(location).is_relative_to(venv), f"imported from {location}, not the venv"
    assert found == "True"


async def test_installed_wheel_migrates_an_empty_database(venv: Path, empty_database: str) -> None:
    env = {
        **CLEAN_ENV,
        "DATABASE_URL": empty_database,
        "TIKTOK_APP_ID": "app",
        "TIKTOK_APP_SECRET": "packaging-secret",
        "TIKTOK_REDIRECT_URI": "https://broker.example/callback",
        "TOKEN_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"p" * 32).decode(),
    }
    process = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "tiktok-auth-service"),
        "migrate",
        env=env,
        cwd=venv,  # no .env of the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 0, f"migrate from the wheel failed:\n{stderr.decode()}"

    connection = await asyncpg.connect(empty_database.replace("+asyncpg", "", 1))
    try:
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        version = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    expected = set(SQLModel.metadata.tables) | {"alembic_version"}
    assert expected <= tables, f"missing tables: {sorted(expected - tables)}"
    assert version


@pytest.mark.parametrize("command", ["dev", "emulator"])
def test_installed_wheel_has_no_development_tools(venv: Path, command: str) -> None:
    # With the tools present the command would serve until the timeout: that fails too.
    result = subprocess.run(
        [str(venv / "bin" / "tiktok-auth-service"), command],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        cwd=venv,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(r"error: .*development tooling.*\n", result.stderr), result.stderr
    assert result.stdout == ""
