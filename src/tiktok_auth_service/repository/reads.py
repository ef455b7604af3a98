"""The token read, the hot path: one asyncpg query on the bare pool answers who is asking,
whether they may, and the sealed token. The connections list (a rare read) is asked the same
way: one query authenticates and lists."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from tiktok_auth_service.db import Database


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """Who is asking: an active API key's permissions and name."""

    unrestricted: bool
    # What a restricted key may read, each list for its own kind of subject: an open id may
    # be a string of digits, so the two lists never stand in for each other.
    advertisers: frozenset[str]
    accounts: frozenset[str]
    name: str  # for the access log and the audit; never the key

    def may_read(self, kind: str, subject: str) -> bool:
        """Whether this key may read `subject`, an advertiser id or (kind `tiktok_account`) an
        open id."""
        return self.unrestricted or subject in (
            self.accounts if kind == "tiktok_account" else self.advertisers
        )


@dataclass(frozen=True, slots=True)
class GrantRow:
    """The grant serving a subject, with the token still sealed."""

    grant_id: uuid.UUID
    status: str
    key_id: str
    access_token_enc: bytes
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    refreshed_at: datetime | None
    refresh_failed_at: datetime | None
    failures: int
    last_checked_at: datetime | None
    connected_by: str | None
    end_user: str | None
    scope: Any
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class TokenRow:
    """What a token read needs: the caller, and the serving grant (None: not connected). Two
    parts because the token cache keeps them apart: one caller per key, one grant per
    subject."""

    caller: ApiKeyRow
    grant: GrantRow | None


_GRANT_COLUMNS = """g.id, {status}, g.key_id, g.access_token_enc, g.expires_at,
       g.refresh_expires_at, g.refreshed_at, g.refresh_failed_at, g.failures,
       g.last_checked_at, g.connected_by, g.end_user, g.scope, g.tags"""

# One round trip answers authentication, authorization and the lookup: no row means the key
# is unknown or revoked; a row with NULL grant means the subject is not connected. An
# advertiser TikTok no longer lists for its grant reads as needing re-authorization. Both
# reads answer the key's whole permission (both lists), so the cache can keep one caller
# record per key whichever read filled it.
_CALLER_COLUMNS = "c.unrestricted, c.allowed_advertiser_ids, c.allowed_open_ids, c.name"
_READ_ADVERTISER_GRANT_SQL = f"""
SELECT {_CALLER_COLUMNS},
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
SELECT {_CALLER_COLUMNS}, {_GRANT_COLUMNS.format(status="g.status")}
FROM api_client AS c
LEFT JOIN oauth_grant AS g ON g.open_id = $2
WHERE c.key_hash = $1 AND c.revoked_at IS NULL
"""  # noqa: S608  (constant text; every value is a bind parameter)


async def _read_token(db: Database, sql: str, key_hash: bytes, subject: str) -> TokenRow | None:
    async with db.acquire() as connection:
        row = await connection.fetchrow(sql, key_hash, subject)
    if row is None:
        return None
    values = list(row.values())
    caller = ApiKeyRow(values[0], frozenset(values[1]), frozenset(values[2]), values[3])
    if values[4] is None:
        return TokenRow(caller, None)
    values[-2] = orjson.loads(values[-2])
    values[-1] = orjson.loads(values[-1])
    return TokenRow(caller, GrantRow(*values[4:]))


GrantReader = Callable[[Database, bytes, str], Awaitable[TokenRow | None]]


async def read_advertiser_token(
    db: Database, key_hash: bytes, advertiser_id: str
) -> TokenRow | None:
    return await _read_token(db, _READ_ADVERTISER_GRANT_SQL, key_hash, advertiser_id)


async def read_account_token(db: Database, key_hash: bytes, open_id: str) -> TokenRow | None:
    return await _read_token(db, _READ_ACCOUNT_GRANT_SQL, key_hash, open_id)


_GRANT_COUNTS_SQL = "SELECT flow, status, count(*) FROM oauth_grant GROUP BY flow, status"


# The readiness probe and the metrics scrape answer within seconds, sooner than a request
# would wait when DATABASE_TIMEOUT_SECONDS is longer.
PROBE_SECONDS = 2.0


async def grant_counts(db: Database) -> dict[tuple[str, str], int]:
    """(flow, status) -> number of grants, for the metrics. Bounded in time like the
    readiness probe, so a slow database cannot hang a scrape."""
    timeout = min(PROBE_SECONDS, db.timeout)
    async with db.pool.acquire(timeout=timeout) as connection:
        rows = await connection.fetch(_GRANT_COUNTS_SQL, timeout=timeout)
    return {(row[0], row[1]): row[2] for row in rows}


@dataclass(frozen=True, slots=True)
class ConnectionRow:
    """One advertiser or TikTok account a key may read, as GET /connections lists it."""

    flow: str
    subject_id: str
    status: str
    name: str | None
    scope: Any
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    connected_by: str | None
    end_user: str | None
    tags: dict[str, str]
    last_failure_at: datetime | None
    last_failure_code: int | None
    last_failure_message: str | None
    failures: int
    next_attempt_at: datetime | None


# Like the token read, one query answers who is asking and what they may see: no row means the
# key is unknown or revoked, one row of NULLs that it may see nothing (yet). Advertisers are
# rows of `advertiser` with the grant serving them (status as the token read reports it);
# accounts are the grants that hold an open_id (replaced ones gave it up). Keyset pagination
# over (flow, subject_id): stable while rows come and go, no offset to walk.
#
# Each flow is read in subject order from its unique index, from the cursor on, filters
# applied, up to a page; an unrestricted key walks the index, a restricted one looks up its
# own subjects (`= ANY`), and the branch the key is not is switched off by a one-time filter.
# So a page costs the same at any depth and table size. (A status or health filter still walks
# past the subjects it leaves out: nothing indexes the status a read reports.) A tag filter is
# a statement of its own, so that the planner can always take the grants' GIN index when the
# tags are rare, rather than a plan made for "no tags given".
#
# Healthy: served (`active` as the read reports it) and no failure since the last success.
# The next attempt is the worker's next refresh or check of a grant it still keeps alive.
_ADVERTISER_STATUS = (
    "CASE WHEN a.status = 'removed' THEN 'reauthorization_required' ELSE g.status END"
)
_HEALTH_COLUMNS = """g.tags, g.last_failure_at, g.last_failure_code, g.last_failure_message,
               g.failures, CASE WHEN g.status = 'active' THEN g.{due} END AS next_attempt_at"""
_ADVERTISER_CONNECTIONS = """
        SELECT 'advertiser' AS flow, a.advertiser_id AS subject_id, {status} AS status,
               a.name, g.scope, g.expires_at, g.refresh_expires_at, g.last_checked_at,
               a.created_at, GREATEST(a.updated_at, g.updated_at) AS updated_at,
               g.connected_by, g.end_user, {health}
        FROM advertiser AS a
        JOIN oauth_grant AS g ON g.id = a.grant_id
        WHERE {mine} AND a.advertiser_id > {after}
          AND ($2::text IS NULL OR $2 = {status})
          AND ($7::bool IS NULL OR $7 = ({status} = 'active' AND g.last_failure_at IS NULL)){tagged}
        ORDER BY a.advertiser_id
"""
_ACCOUNT_CONNECTIONS = """
        SELECT 'tiktok_account' AS flow, g.open_id AS subject_id, {status}, NULL AS name,
               g.scope, g.expires_at, g.refresh_expires_at, g.last_checked_at, g.created_at,
               g.updated_at, g.connected_by, g.end_user, {health}
        FROM oauth_grant AS g
        WHERE g.flow = 'tiktok_account' AND g.open_id IS NOT NULL
          AND {mine} AND g.open_id > {after}
          AND ($2::text IS NULL OR {status} = $2)
          AND ($7::bool IS NULL OR $7 = ({status} = 'active' AND g.last_failure_at IS NULL)){tagged}
        ORDER BY g.open_id
"""


def _after(flow: str) -> str:
    """The subjects of `flow` after the cursor ($4, $5): all of them while the cursor is in an
    earlier flow, none once it is past this one (NULL)."""
    return f"CASE WHEN $4::text < '{flow}' THEN '' WHEN $4::text = '{flow}' THEN $5::text END"


def _branches(tagged: str) -> str:
    branches = []
    for flow, template, status, due, allowed, subject in (
        (
            "advertiser",
            _ADVERTISER_CONNECTIONS,
            _ADVERTISER_STATUS,
            "next_check_at",
            "allowed_advertiser_ids",
            "a.advertiser_id",
        ),
        (
            "tiktok_account",
            _ACCOUNT_CONNECTIONS,
            "g.status",
            "refresh_due_at",
            "allowed_open_ids",
            "g.open_id",
        ),
    ):
        for mine in ("c.unrestricted", f"NOT c.unrestricted AND {subject} = ANY(c.{allowed})"):
            query = template.format(
                status=status,
                health=_HEALTH_COLUMNS.format(due=due),
                mine=f"($3::text IS NULL OR $3 = '{flow}') AND {mine}",
                after=_after(flow),
                tagged=tagged,
            )
            branches.append(f"({query}  LIMIT $6)")
    return "\n        UNION ALL\n".join(branches)


def _list_connections_sql(tagged: str) -> str:
    return f"""
WITH caller AS (
    SELECT unrestricted, allowed_advertiser_ids, allowed_open_ids
    FROM api_client
    WHERE key_hash = $1 AND revoked_at IS NULL
)
SELECT page.*
FROM caller AS c
LEFT JOIN LATERAL (
    SELECT *
    FROM (
{_branches(tagged)}
    ) AS connection
    ORDER BY connection.flow, connection.subject_id
    LIMIT $6
) AS page ON true
"""  # noqa: S608  (constant text; every value is a bind parameter)


_LIST_CONNECTIONS_SQL = _list_connections_sql("")
# $8: the tags every connection listed must carry, as a JSON object.
_LIST_TAGGED_CONNECTIONS_SQL = _list_connections_sql("\n          AND g.tags @> $8::jsonb")


async def read_connections(
    db: Database,
    key_hash: bytes,
    *,
    status: str | None,
    flow: str | None,
    after: tuple[str, str] | None,
    limit: int,
    healthy: bool | None = None,
    tags: dict[str, str] | None = None,
) -> list[ConnectionRow] | None:
    """Up to `limit` connections this key may read after the (flow, subject_id) `after`, in
    that order, carrying every one of `tags`; None when the key is unknown or revoked."""
    after_flow, after_subject = after or ("", "")  # sorts before every flow
    values: list[Any] = [key_hash, status, flow, after_flow, after_subject, limit, healthy]
    sql = _LIST_CONNECTIONS_SQL
    if tags:
        sql = _LIST_TAGGED_CONNECTIONS_SQL
        values.append(orjson.dumps(tags).decode())
    async with db.acquire() as connection:
        rows = await connection.fetch(sql, *values)
    if not rows:
        return None
    found = []
    for row in rows:
        if row["flow"] is None:
            break  # the key may see nothing here
        fields = dict(row)
        fields["scope"] = orjson.loads(fields["scope"])
        fields["tags"] = orjson.loads(fields["tags"])
        found.append(ConnectionRow(**fields))
    return found


async def database_answers(db: Database) -> bool:
    timeout = min(PROBE_SECONDS, db.timeout)
    try:
        async with db.pool.acquire(timeout=timeout) as connection:
            await connection.fetchval("SELECT 1", timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True
