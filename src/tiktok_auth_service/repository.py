"""All SQL lives here. Write paths use an AsyncSession (the caller owns the transaction;
nothing here commits); the token read uses one asyncpg query on the bare pool."""

from __future__ import annotations

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
    ApiClient,
    Flow,
    Grant,
    GrantStatus,
    OAuthState,
)


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- OAuth state ---------------------------------------------------------------------

    async def add_state(self, state: OAuthState) -> None:
        self.session.add(state)
        await self.session.flush()

    async def lock_state(self, state_hash: bytes) -> OAuthState | None:
        result = await self.session.execute(
            sa.select(OAuthState).where(col(OAuthState.state_hash) == state_hash).with_for_update()
        )
        return result.scalar_one_or_none()

    async def delete_expired_states(self, before: datetime) -> int:
        result = await self.session.execute(
            sa.delete(OAuthState).where(col(OAuthState.expires_at) < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- Grants and advertisers ----------------------------------------------------------

    async def add_grant(self, grant: Grant) -> None:
        self.session.add(grant)
        await self.session.flush()

    async def assign_advertisers(
        self, grant_id: uuid.UUID, advertiser_ids: Iterable[str], now: datetime
    ) -> None:
        """Point each advertiser at `grant_id`; re-authorizing moves it to the newest grant."""
        rows = [
            {
                "advertiser_id": advertiser_id,
                "grant_id": grant_id,
                "created_at": now,
                "updated_at": now,
            }
            for advertiser_id in advertiser_ids
        ]
        if not rows:
            return
        statement = insert(Advertiser).values(rows)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["advertiser_id"],
                set_={"grant_id": statement.excluded.grant_id, "updated_at": now},
            )
        )

    async def set_advertiser_names(
        self, grant_id: uuid.UUID, names: Mapping[str, str], now: datetime
    ) -> None:
        for advertiser_id, name in names.items():
            await self.session.execute(
                sa.update(Advertiser)
                .where(
                    col(Advertiser.advertiser_id) == advertiser_id,
                    col(Advertiser.grant_id) == grant_id,
                )
                .values(name=name, updated_at=now)
            )

    async def lock_grant_of_advertiser(self, advertiser_id: str) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant)
            .join(Advertiser, col(Advertiser.grant_id) == col(Grant.id))
            .where(col(Advertiser.advertiser_id) == advertiser_id)
            .with_for_update(of=Grant)
        )
        return result.scalar_one_or_none()

    async def lock_grant(self, grant_id: uuid.UUID) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant).where(col(Grant.id) == grant_id).with_for_update()
        )
        return result.scalar_one_or_none()

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

    async def claim_due_account_grant(
        self, due_before: datetime, failed_before: datetime
    ) -> Grant | None:
        """Lock one account grant whose access token expires before `due_before`.

        SKIP LOCKED lets every replica's worker (and on-demand refreshes) share the work
        without waiting on each other or refreshing one grant twice.
        """
        result = await self.session.execute(
            sa.select(Grant)
            .where(
                col(Grant.flow) == Flow.TIKTOK_ACCOUNT,
                col(Grant.status) == GrantStatus.ACTIVE,
                col(Grant.expires_at) < due_before,
                sa.or_(
                    col(Grant.refresh_failed_at).is_(None),
                    col(Grant.refresh_failed_at) < failed_before,
                ),
            )
            .order_by(col(Grant.expires_at))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        return result.scalar_one_or_none()

    async def advertiser_ids_of_grant(self, grant_id: uuid.UUID) -> list[str]:
        result = await self.session.execute(
            sa.select(col(Advertiser.advertiser_id))
            .where(col(Advertiser.grant_id) == grant_id)
            .order_by(col(Advertiser.advertiser_id))
        )
        return list(result.scalars())

    async def set_grant_status(self, grant: Grant, status: GrantStatus, now: datetime) -> None:
        grant.status = status
        grant.updated_at = now
        grant.version += 1
        await self.session.flush()

    # -- API clients ---------------------------------------------------------------------

    async def add_api_client(self, client: ApiClient) -> None:
        self.session.add(client)
        await self.session.flush()

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
    scope: Any


# One round trip answers authentication, authorization and the lookup: no row means the key
# is unknown or revoked; a row with NULL grant means the subject is not connected.
_READ_ADVERTISER_GRANT_SQL = """
SELECT c.unrestricted, c.allowed_advertiser_ids,
       g.id, g.status, g.key_id, g.access_token_enc, g.expires_at, g.refresh_expires_at, g.scope
FROM api_client AS c
LEFT JOIN advertiser AS a ON a.advertiser_id = $2
LEFT JOIN oauth_grant AS g ON g.id = a.grant_id
WHERE c.key_hash = $1 AND c.revoked_at IS NULL
"""
_READ_ACCOUNT_GRANT_SQL = """
SELECT c.unrestricted, c.allowed_open_ids,
       g.id, g.status, g.key_id, g.access_token_enc, g.expires_at, g.refresh_expires_at, g.scope
FROM api_client AS c
LEFT JOIN oauth_grant AS g ON g.open_id = $2
WHERE c.key_hash = $1 AND c.revoked_at IS NULL
"""


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
