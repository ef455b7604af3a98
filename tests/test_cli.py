"""The command line against the real database: migrate and API key management."""

from __future__ import annotations

import argparse
import base64
import math
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures import Canaries
from tiktok_auth_service import __version__, cli
from tiktok_auth_service.cli import _cgroup_cpu_quota, _parser
from tiktok_auth_service.config import Settings
from tiktok_auth_service.server import http_server

CLI_APP_SECRET = "cli-secret-never-logged"


def cli_env(database_url: str, keys: str | None = None) -> dict[str, str]:
    """The environment the command line runs with in these tests; `keys`: its
    TOKEN_ENCRYPTION_KEYS (default: one key)."""
    return {
        **os.environ,
        "TIKTOK_APP_ID": "app",
        "TIKTOK_APP_SECRET": CLI_APP_SECRET,
        "TIKTOK_REDIRECT_URI": "https://broker.example/callback",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": keys or "k1:" + base64.b64encode(b"1" * 32).decode(),
    }


def run_cli(
    database_url: str, *args: str, keys: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "tiktok_auth_service", *args],
        capture_output=True,
        text=True,
        env=cli_env(database_url, keys),
        check=False,
        timeout=60,
    )


async def test_migrate_is_idempotent(migrated: str) -> None:
    result = run_cli(migrated, "migrate")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr


@pytest.mark.slow  # command-line subprocesses, one after another
async def test_api_key_lifecycle(migrated: str, pg: asyncpg.Connection, canaries: Canaries) -> None:
    created = run_cli(
        migrated, "api-keys", "create", "reports", "--advertiser", "7100000000000000001"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    canaries.add(key)
    assert key.startswith("tas_") and len(key) > 40
    stored = await pg.fetchrow("SELECT key_hash, allowed_advertiser_ids FROM api_client")
    assert stored["allowed_advertiser_ids"] == ["7100000000000000001"]
    assert key.encode() not in bytes(stored["key_hash"])

    listed = run_cli(migrated, "api-keys", "list")
    assert "reports\tactive\tadvertisers=7100000000000000001" in listed.stdout
    assert key not in listed.stdout + listed.stderr

    duplicate = run_cli(migrated, "api-keys", "create", "reports")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    assert run_cli(migrated, "api-keys", "revoke", "reports").returncode == 0
    assert "revoked" in run_cli(migrated, "api-keys", "list").stdout
    again = run_cli(migrated, "api-keys", "revoke", "reports")
    assert again.returncode == 1


async def test_invalid_advertiser_id_is_refused(migrated: str, pg: asyncpg.Connection) -> None:
    result = run_cli(migrated, "api-keys", "create", "x", "--advertiser", "abc")
    assert result.returncode == 1
    assert "not an advertiser id" in result.stderr
    assert await pg.fetchval("SELECT count(*) FROM api_client") == 0


async def test_tiktok_open_ids_are_taken_as_they_are(migrated: str, pg: asyncpg.Connection) -> None:
    # TikTok's open ids begin with "-": still the option's value, not an option of its own.
    result = run_cli(
        migrated, "api-keys", "create", "x", "--account", "-000openid0001", "--account", "-0002"
    )
    assert result.returncode == 0, result.stderr
    stored = await pg.fetchval("SELECT allowed_open_ids FROM api_client")
    assert stored == ["-0002", "-000openid0001"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("7100000000000000003", "looks like an advertiser id"),
        ("has space", "not an open id"),
        ("x" * 129, "not an open id"),
        ("", "not an open id"),
    ],
)
async def test_invalid_open_ids_are_refused(
    migrated: str, pg: asyncpg.Connection, value: str, why: str
) -> None:
    result = run_cli(migrated, "api-keys", "create", "x", f"--account={value}")
    assert result.returncode == 1, result.stderr
    assert why in result.stderr
    assert await pg.fetchval("SELECT count(*) FROM api_client") == 0


def test_migrate_against_an_unreachable_database_is_one_line() -> None:
    result = run_cli("postgresql+asyncpg://nobody@127.0.0.1:9/none", "migrate")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the database is unreachable (ConnectionRefusedError)"
    ]


def test_every_command_explains_itself() -> None:
    version = run_cli("postgresql+asyncpg://u@h/d", "--version")
    assert version.stdout.strip() == f"tiktok-auth-service {__version__}"
    parsers = [_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            else:
                assert action.help, f"{parser.prog} {action.dest} has no help"
    serve = run_cli("postgresql+asyncpg://u@h/d", "serve", "--help").stdout
    assert "--port PORT  port to listen on (default: 8000)" in serve
    assert f"server processes (default: {cli.available_cpus()}, one per CPU" in serve
    dev = run_cli("postgresql+asyncpg://u@h/d", "dev", "--help").stdout
    assert "the emulator's port (default: 8900)" in dev


def test_serve_bounds_its_graceful_stop_by_a_lease(
    settings: Settings,
) -> None:
    """A server process still running a request a lease's length after SIGTERM is killed;
    one that dies otherwise is replaced."""
    server = http_server(settings, "127.0.0.1", 8000, 2)
    assert server.workers_kill_timeout == math.ceil(settings.lease_seconds)
    assert server.respawn_failed_workers and server.workers == 2


class TestAvailableCpus:
    @pytest.mark.parametrize(
        ("files", "quota"),
        [
            ({"cpu.max": "150000 100000\n"}, 1.5),
            ({"cpu.max": "max 100000\n"}, None),
            ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
            ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
            ({}, None),
        ],
    )
    def test_the_cgroup_quota_in_cpus(
        self, tmp_path: Path, files: dict[str, str], quota: float | None
    ) -> None:
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(exist_ok=True)
            (tmp_path / name).write_text(text)
        assert _cgroup_cpu_quota(tmp_path) == quota

    @pytest.mark.parametrize(
        ("affinity", "quota", "expected"),
        [(8, None, 8), (8, 1.5, 2), (8, 0.2, 1), (2, 4.0, 2)],
    )
    def test_affinity_capped_by_the_quota_rounded_up(
        self, monkeypatch: pytest.MonkeyPatch, affinity: int, quota: float | None, expected: int
    ) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)))
        monkeypatch.setattr(cli, "_cgroup_cpu_quota", lambda: quota)
        assert cli.available_cpus() == expected
