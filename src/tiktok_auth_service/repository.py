"""All SQL lives here. Write paths use an AsyncSession (the caller owns the transaction;
nothing here commits); the token read uses one asyncpg query on the bare pool."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service.models import (
    Advertiser,
    AdvertiserStatus,
    ApiClient,
    ConnectSession,
    Flow,
    Grant,
    GrantStatus,
    OAuthState,
)


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- Connect sessions and OAuth states ------------------------------------------------

    async def add(self, row: ConnectSession | OAuthState | Grant | ApiClient) -> None:
        self.session.add(row)
        await self.session.flush()

    async def lock_connect_session(self, session_hash: bytes) -> ConnectSession | None:
        result = await self.session.execute(
            sa.select(ConnectSession)
            .where(col(ConnectSession.session_hash) == session_hash)
            .with_for_update()
        )
        return result.scalar_one_or_none()

    async def lock_state(self, state_hash: bytes) -> OAuthState | None:
        result = await self.session.execute(
            sa.select(OAuthState).where(col(OAuthState.state_hash) == state_hash).with_for_update()
        )
        return result.scalar_one_or_none()

    async def delete_expired_states(self, before: datetime) -> int:
        """Drop OAuth states and connect sessions that expired before `before`."""
        deleted = 0
        for table in (OAuthState, ConnectSession):
            result = await self.session.execute(
                sa.delete(table).where(col(table.expires_at) < before)
            )
            deleted += int(result.rowcount)  # type: ignore[attr-defined]
        return deleted

    # -- Grants and advertisers ----------------------------------------------------------

    async def assign_advertisers(
        self, grant_id: uuid.UUID, advertiser_ids: Iterable[str], now: datetime
    ) -> list[uuid.UUID]:
        """Point each advertiser at `grant_id` (re-authorizing moves it to the newest grant);
        returns the grants they were served by before."""
        ids = sorted(set(advertiser_ids))
        if not ids:
            return []
        previous = await self.session.execute(
            sa.select(col(Advertiser.grant_id))
            .where(col(Advertiser.advertiser_id).in_(ids), col(Advertiser.grant_id) != grant_id)
            .distinct()
        )
        rows = [
            {
                "advertiser_id": advertiser_id,
                "grant_id": grant_id,
                "status": AdvertiserStatus.ACTIVE,
                "created_at": now,
                "updated_at": now,
            }
            for advertiser_id in ids
        ]
        statement = insert(Advertiser).values(rows)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["advertiser_id"],
                set_={
                    "grant_id": statement.excluded.grant_id,
                    "status": AdvertiserStatus.ACTIVE,
                    "updated_at": now,
                },
            )
        )
        return list(previous.scalars())

    async def set_advertiser_names(
        self, grant_id: uuid.UUID, names: Mapping[str, str], now: datetime
    ) -> None:
        for advertiser_id, name in names.items():
            await self.session.execute(
                sa.update(Advertiser)
                .where(
                    col(Advertiser.advertiser_id) == advertiser_id,
                    col(Advertiser.grant_id) == grant_id,
                    sa.or_(col(Advertiser.name).is_(None), col(Advertiser.name) != name),
                )
                .values(name=name, updated_at=now)
            )

    async def advertisers_of_grants(
        self, grant_ids: Sequence[uuid.UUID], status: AdvertiserStatus | None = None
    ) -> list[Advertiser]:
        """The advertiser rows served by these grants, in id order."""
        query = sa.select(Advertiser).where(col(Advertiser.grant_id).in_(grant_ids))
        if status is not None:
            query = query.where(col(Advertiser.status) == status)
        result = await self.session.execute(query.order_by(col(Advertiser.advertiser_id)))
        return list(result.scalars())

    async def lock_advertisers(self, advertiser_ids: Sequence[str]) -> list[Advertiser]:
        result = await self.session.execute(
            sa.select(Advertiser)
            .where(col(Advertiser.advertiser_id).in_(advertiser_ids))
            .with_for_update()
        )
        return list(result.scalars())

    async def set_advertiser_status(
        self, advertiser_ids: Sequence[str], status: AdvertiserStatus, now: datetime
    ) -> None:
        if advertiser_ids:
            await self.session.execute(
                sa.update(Advertiser)
                .where(col(Advertiser.advertiser_id).in_(advertiser_ids))
                .values(status=status, updated_at=now)
            )

    async def lock_grant(self, grant_id: uuid.UUID) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant).where(col(Grant.id) == grant_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def lock_grant_of_advertiser(self, advertiser_id: str) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant)
            .join(Advertiser, col(Advertiser.grant_id) == col(Grant.id))
            .where(col(Advertiser.advertiser_id) == advertiser_id)
            .with_for_update(of=Grant)
        )
        return result.scalar_one_or_none()

    async def lock_live_grants_covering(self, advertiser_id: str) -> list[Grant]:
        """Every active grant whose token TikTok would still accept for this advertiser."""
        result = await self.session.execute(
            sa.select(Grant)
            .where(
                col(Grant.status) == GrantStatus.ACTIVE,
                col(Grant.advertiser_ids).contains([advertiser_id]),
            )
            .order_by(col(Grant.created_at))
            .with_for_update()
        )
        return list(result.scalars())

    async def insert_grant_unless_account_exists(self, grant: Grant) -> bool:
        """Insert an account grant; False (and nothing written) if its open_id has one."""
        values = grant.model_dump()
        result = await self.session.execute(
            insert(Grant)
            .values(values)
            .on_conflict_do_nothing(
                index_elements=["open_id"], index_where=sa.text("open_id IS NOT NULL")
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def lock_grant_of_account(self, open_id: str) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant).where(col(Grant.open_id) == open_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def orphan_grants_serving_nobody(
        self, grant_ids: Sequence[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        """Mark orphaned those of these active advertiser grants that no advertiser is served
        by any more; returns their ids."""
        if not grant_ids:
            return []
        served = sa.exists().where(
            col(Advertiser.grant_id) == col(Grant.id),
            col(Advertiser.status) == AdvertiserStatus.ACTIVE,
        )
        result = await self.session.execute(
            sa.update(Grant)
            .where(
                col(Grant.id).in_(grant_ids),
                col(Grant.flow) == Flow.ADVERTISER,
                col(Grant.status) == GrantStatus.ACTIVE,
                col(Grant.orphaned_at).is_(None),
                ~served,
            )
            .values(orphaned_at=now, updated_at=now, version=col(Grant.version) + 1)
            .returning(col(Grant.id))
        )
        return list(result.scalars())

    async def claim(
        self, kind: Claim, now: datetime, lease_until: datetime, limit: int
    ) -> list[Grant]:
        """Lease up to `limit` grants due for `kind` of work, soonest first.

        `FOR UPDATE SKIP LOCKED` in the subquery lets every replica claim at once without
        waiting on each other or taking the same grant; the lease (and the version bump the
        claimer remembers) then keeps others away for the TikTok call, without a row lock.
        """
        due = _DUE[kind]
        due_column = col(getattr(Grant, due.column))
        claimable = (
            sa.select(col(Grant.id))
            .where(
                *due.where,
                due_column <= now,
                sa.or_(col(Grant.lease_until).is_(None), col(Grant.lease_until) < now),
            )
            .order_by(due_column)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            sa.update(Grant)
            .where(col(Grant.id).in_(claimable.scalar_subquery()))
            .values(lease_until=lease_until, version=col(Grant.version) + 1)
            .returning(Grant),
            execution_options={"synchronize_session": False},
        )
        return sorted(result.scalars(), key=lambda grant: getattr(grant, due.column))

    async def set_grant_status(self, grant: Grant, status: GrantStatus, now: datetime) -> None:
        grant.status = status
        grant.updated_at = now
        grant.lease_until = None
        grant.version += 1
        await self.session.flush()

    # -- API clients ---------------------------------------------------------------------

    async def api_client(self, client_id: uuid.UUID) -> ApiClient | None:
        return await self.session.get(ApiClient, client_id)

    async def api_client_by_name(self, name: str) -> ApiClient | None:
        result = await self.session.execute(sa.select(ApiClient).where(col(ApiClient.name) == name))
        return result.scalar_one_or_none()

    async def list_api_clients(self) -> Sequence[ApiClient]:
        result = await self.session.execute(sa.select(ApiClient).order_by(col(ApiClient.name)))
        return result.scalars().all()

    async def api_client_by_key_hash(self, key_hash: bytes) -> ApiClient | None:
        result = await self.session.execute(
            sa.select(ApiClient).where(
                col(ApiClient.key_hash) == key_hash,
                col(ApiClient.revoked_at).is_(None),
            )
        )
        return result.scalar_one_or_none()


class Claim(enum.StrEnum):
    """Background work on grants, each claimed by its own due column."""

    REFRESH = "refresh"  # account tokens before they expire
    CHECK = "check"  # advertiser token liveness and advertiser list
    REVOKE = "revoke"  # orphaned grants whose token may still work


@dataclass(frozen=True)
class _Due:
    column: str
    where: tuple[sa.ColumnElement[bool], ...]


_ACTIVE = col(Grant.status) == GrantStatus.ACTIVE
_DUE: dict[Claim, _Due] = {
    Claim.REFRESH: _Due(
        "refresh_due_at",
        (
            col(Grant.flow) == Flow.TIKTOK_ACCOUNT,
            _ACTIVE,
            col(Grant.open_id).is_not(None),
            col(Grant.orphaned_at).is_(None),
        ),
    ),
    Claim.CHECK: _Due(
        "next_check_at",
        (col(Grant.flow) == Flow.ADVERTISER, _ACTIVE, col(Grant.orphaned_at).is_(None)),
    ),
    Claim.REVOKE: _Due("orphaned_at", (col(Grant.orphaned_at).is_not(None), _ACTIVE)),
}


@dataclass(frozen=True, slots=True)
class TokenRow:
    """What a token read needs: the caller's permissions and the serving grant, if any."""

    unrestricted: bool
    allowed: list[str]  # the advertiser ids or open ids the key is restricted to
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
SELECT c.unrestricted, c.allowed_advertiser_ids,
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
SELECT c.unrestricted, c.allowed_open_ids, {_GRANT_COLUMNS.format(status="g.status")}
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


async def database_answers(pool: asyncpg.Pool) -> bool:
    timeout = 2.0
    try:
        async with pool.acquire(timeout=timeout) as connection:
            await connection.fetchval("SELECT 1", timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True
