"""The command line against the real database: migrate and API key management."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import asyncpg

from tests.fixtures import Canaries


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TIKTOK_APP_ID": "app",
        "TIKTOK_APP_SECRET": "cli-secret",
        "TIKTOK_REDIRECT_URI": "https://broker.example/callback",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"1" * 32).decode(),
    }
    return subprocess.run(
        [sys.executable, "-m", "tiktok_auth_service", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


async def test_migrate_is_idempotent(migrated: str) -> None:
    result = run_cli(migrated, "migrate")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr


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
