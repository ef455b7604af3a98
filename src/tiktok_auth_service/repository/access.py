"""The audit of token access: written in batches with COPY on the bare pool (the token read's
pool: no ORM unit of work on the hot path), read back by the `audit` command."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from tiktok_auth_service.db import Database

_COLUMNS = [
    "at",
    "caller",
    "action",
    "subject",
    "outcome",
    "request_id",
    "tiktok_request_id",
    "duration_ms",
]
_PRUNE_BATCH = 10_000


class TokenAccessRow(NamedTuple):
    """One models.TokenAccess row, as COPY writes it and the `audit` command reads it."""

    at: datetime
    caller: str | None
    action: str
    subject: str
    outcome: str
    request_id: str | None
    tiktok_request_id: str | None = None  # proxied calls only, as duration_ms
    duration_ms: float | None = None


async def write_access(db: Database, records: list[TokenAccessRow]) -> None:
    async with db.acquire() as connection:
        await connection.copy_records_to_table("token_access", records=records, columns=_COLUMNS)


async def delete_access_before(db: Database, before: datetime) -> int:
    """Delete records older than `before`, in batches so no transaction grows large."""
    deleted = 0
    async with db.acquire() as connection:
        while True:
            status = await connection.execute(
                "DELETE FROM token_access WHERE id IN"
                " (SELECT id FROM token_access WHERE at < $1 LIMIT $2)",
                before,
                _PRUNE_BATCH,
            )
            count = int(status.split()[-1])
            deleted += count
            if count < _PRUNE_BATCH:
                return deleted


async def read_access(
    db: Database,
    *,
    caller: str | None,
    subject: str | None,
    since: datetime | None,
    limit: int,
) -> list[TokenAccessRow]:
    """Records newest first, filtered by caller (API key name), subject and time."""
    async with db.acquire() as connection:
        rows = await connection.fetch(
            "SELECT at, caller, action, subject, outcome, request_id, tiktok_request_id,"
            " duration_ms FROM token_access"
            " WHERE ($1::text IS NULL OR caller = $1) AND ($2::text IS NULL OR subject = $2)"
            " AND ($3::timestamptz IS NULL OR at >= $3)"
            " ORDER BY at DESC, id DESC LIMIT $4",
            caller,
            subject,
            since,
            limit,
        )
    return [TokenAccessRow(*row.values()) for row in rows]
