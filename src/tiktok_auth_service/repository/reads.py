"""The token read, the hot path: one asyncpg query on the bare pool answers who is asking,
whether they may, and the sealed token."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True, slots=True)
class TokenRow:
    """What a token read needs: the caller's permissions and the serving grant, if any."""

    unrestricted: bool
    allowed: list[str]  # the advertiser ids or open ids the key is restricted to
    caller: str  # the API key's name (for the access log; never the key)
    grant_id: uuid.UUID | None
    status: str | None
    key_id: str | None
    access_token_enc: bytes | None
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    refreshed_at: datetime | None
    refresh_failed_at: datetime | None
    failures: int | None
    last_checked_at: datetime | None
    connected_by: str | None
    end_user: str | None
    scope: Any


_GRANT_COLUMNS = """g.id, {status}, g.key_id, g.access_token_enc, g.expires_at,
       g.refresh_expires_at, g.refreshed_at, g.refresh_failed_at, g.failures,
       g.last_checked_at, g.connected_by, g.end_user, g.scope"""

# One round trip answers authentication, authorization and the lookup: no row means the key
# is unknown or revoked; a row with NULL grant means the subject is not connected. An
# advertiser TikTok no longer lists for its grant reads as needing re-authorization.
_READ_ADVERTISER_GRANT_SQL = f"""
SELECT c.unrestricted, c.allowed_advertiser_ids, c.name,
       {
    _GRANT_COLUMNS.format(
        status="CASE WHEN a.status = 'removed' THEN 'reauthorization_required' ELSE g.status END"
    )
}
FROM api_client AS c
LEFT JOIN advertiser AS a ON a.advertiser_id = $2
LEFT JOIN oauth_grant AS g ON g.id = a.grant_id
WHERE c.key_hash = $1 AND c.revoked_at IS NULL
"""  # noqa: S608  (constant text; every value is a bind parameter)
_READ_ACCOUNT_GRANT_SQL = f"""
SELECT c.unrestricted, c.allowed_open_ids, c.name, {_GRANT_COLUMNS.format(status="g.status")}
FROM api_client AS c
LEFT JOIN oauth_grant AS g ON g.open_id = $2
WHERE c.key_hash = $1 AND c.revoked_at IS NULL
"""  # noqa: S608  (constant text; every value is a bind parameter)


async def _read_token(
    pool: asyncpg.Pool, sql: str, key_hash: bytes, subject: str
) -> TokenRow | None:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(sql, key_hash, subject)
    if row is None:
        return None
    values = list(row.values())
    if values[-1] is not None:
        values[-1] = orjson.loads(values[-1])
    return TokenRow(*values)


GrantReader = Callable[[asyncpg.Pool, bytes, str], Awaitable[TokenRow | None]]


async def read_advertiser_token(
    pool: asyncpg.Pool, key_hash: bytes, advertiser_id: str
) -> TokenRow | None:
    return await _read_token(pool, _READ_ADVERTISER_GRANT_SQL, key_hash, advertiser_id)


async def read_account_token(pool: asyncpg.Pool, key_hash: bytes, open_id: str) -> TokenRow | None:
    return await _read_token(pool, _READ_ACCOUNT_GRANT_SQL, key_hash, open_id)


_GRANT_COUNTS_SQL = "SELECT flow, status, count(*) FROM oauth_grant GROUP BY flow, status"


async def grant_counts(pool: asyncpg.Pool) -> dict[tuple[str, str], int]:
    """(flow, status) -> number of grants, for the metrics. Bounded in time like the
    readiness probe, so a slow database cannot hang a scrape."""
    timeout = 2.0
    async with pool.acquire(timeout=timeout) as connection:
        rows = await connection.fetch(_GRANT_COUNTS_SQL, timeout=timeout)
    return {(row[0], row[1]): row[2] for row in rows}


async def database_answers(pool: asyncpg.Pool) -> bool:
    timeout = 2.0
    try:
        async with pool.acquire(timeout=timeout) as connection:
            await connection.fetchval("SELECT 1", timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True
