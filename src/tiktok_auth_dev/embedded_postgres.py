"""A throwaway or local PostgreSQL for `dev` and the tests, so neither needs a manual step.

The `pgserver` wheel (CPython 3.11/3.12) is used when installed; otherwise the PostgreSQL
binaries on PATH (or Debian's /usr/lib/postgresql/*/bin). PostgreSQL refuses to run as root,
so as root the server runs as an unprivileged system user. The server listens on a Unix socket
only; nothing is exposed on the network.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote


def _asyncpg_url(socket_dir: str, user: str, database: str = "postgres") -> str:
    return f"postgresql+asyncpg://{user}@/{database}?host={quote(socket_dir)}"


def _find_binaries() -> Path:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        raise RuntimeError(
            "no PostgreSQL found: install the 'pgserver' wheel (Python 3.11/3.12) or the "
            "PostgreSQL server binaries (e.g. apt-get install postgresql), or set DATABASE_URL"
        )
    return Path(candidates[0]).parent


@contextlib.contextmanager
def _with_binaries(data_dir: Path) -> Iterator[str]:
    bindir = _find_binaries()
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        run_as = ["runuser", "-u", user, "--"]
        entry = pwd.getpwnam(user)
        for path in (data_dir, data_dir.parent):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
    log = data_dir.parent / "postgres.log"
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-l",
            str(log),
            "-w",
            "-o",
            f"-c listen_addresses='' -c unix_socket_directories='{data_dir}' -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield _asyncpg_url(str(data_dir), "postgres")
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def embedded_postgres(data_dir: Path | None = None) -> Iterator[str]:
    """Start PostgreSQL and yield its `postgresql+asyncpg://` URL; stop it on exit.

    With `data_dir` the data survives restarts; without, a temporary cluster is deleted after.
    """
    temporary = data_dir is None
    base = Path(tempfile.mkdtemp(prefix="tas-pg-")) if temporary else data_dir
    assert base is not None
    base.mkdir(parents=True, exist_ok=True)
    pgdata = base / "pgdata"
    try:
        try:
            with warnings.catch_warnings():
                # platformdirs (through pgserver) warns when XDG_RUNTIME_DIR is unset, as it
                # is on servers and in CI; its /tmp fallback is fine here.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                import pgserver
        except ImportError:
            pgdata.mkdir(exist_ok=True)
            with _with_binaries(pgdata) as url:
                yield url
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
            uri = server.get_uri()
            socket_dir = uri.split("host=", 1)[1]
            try:
                yield _asyncpg_url(socket_dir, "postgres")
            finally:
                server.cleanup()
    finally:
        if temporary:
            shutil.rmtree(base, ignore_errors=True)
