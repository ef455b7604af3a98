"""Grants and the advertisers they serve: the lifecycle's writes, the revocations' locks, and
key rotation's walk over the sealed tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service import lease
from tiktok_auth_service.models.grants import (
    Advertiser,
    AdvertiserStatus,
    Flow,
    Grant,
    GrantCoverage,
    GrantStatus,
)


def _texts(values: Iterable[str]) -> sa.BindParameter[Any]:
    """One bind parameter holding a text[]: a statement over thousands of advertisers stays one
    statement, under PostgreSQL's 32,767 parameters."""
    return sa.literal(list(values), pg.ARRAY(sa.Text))


def _covering(advertiser_ids: Iterable[str]) -> sa.ColumnElement[bool]:
    """The grant is one of those whose token covers any of these advertisers.

    Each advertiser is looked up in `grant_coverage` on its own (a lateral subquery; OFFSET 0
    keeps the planner from merging it into a join it could run as a scan of the whole table,
    which it prefers past a few thousand advertisers); the grant ids found are collected into
    an array once (`= ANY(ARRAY(...))`) and fetched by primary key, where `IN (subquery)` could
    again be hash-joined with a scan of the grants."""
    given = sa.func.unnest(_texts(advertiser_ids)).table_valued("advertiser_id")
    given = given.render_derived("given")
    found = (
        sa.select(col(GrantCoverage.grant_id))
        .where(col(GrantCoverage.advertiser_id) == given.c.advertiser_id)
        .offset(0)
        .lateral("found")
    )
    covering = sa.select(found.c.grant_id).select_from(given.join(found, sa.true())).distinct()
    return col(Grant.id) == sa.any_(sa.func.array(covering.scalar_subquery()))


class GrantQueries:
    session: AsyncSession

    async def assign_advertisers(
        self, grant_id: uuid.UUID, advertiser_ids: Iterable[str], now: datetime
    ) -> dict[str, uuid.UUID]:
        """Point each advertiser at `grant_id` (re-authorizing moves it to the newest grant),
        in two statements; returns the other grant each one pointed at before. In id order, so
        racing authorizations lock the rows in one order; a racing insert of the same
        advertiser waits here for the other transaction to end, and then counts as what it
        pointed at before."""
        ids = sorted(set(advertiser_ids))
        if not ids:
            return {}
        given = sa.func.unnest(_texts(ids)).table_valued("advertiser_id").render_derived("given")
        rows = sa.select(
            given.c.advertiser_id,
            sa.literal(grant_id, sa.Uuid),
            sa.literal(str(AdvertiserStatus.ACTIVE), sa.Text),
            sa.literal(now, sa.DateTime(timezone=True)),
            sa.literal(now, sa.DateTime(timezone=True)),
        ).order_by(given.c.advertiser_id)
        statement = insert(Advertiser).from_select(
            ["advertiser_id", "grant_id", "status", "created_at", "updated_at"], rows
        )
        # RETURNING shows only the new row, so the conflict locks the existing one unchanged
        # (showing the grant it points at) and a second statement moves it.
        locked = await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["advertiser_id"],
                set_={"grant_id": col(Advertiser.grant_id)},
            ).returning(col(Advertiser.advertiser_id), col(Advertiser.grant_id))
        )
        before = {row.advertiser_id: row.grant_id for row in locked if row.grant_id != grant_id}
        # Only the rows that existed: the ones just inserted already say so.
        await self.session.execute(
            sa.update(Advertiser)
            .where(
                col(Advertiser.advertiser_id) == sa.any_(_texts(ids)),
                sa.or_(
                    col(Advertiser.grant_id) != grant_id,
                    col(Advertiser.status) != AdvertiserStatus.ACTIVE,
                ),
            )
            .values(grant_id=grant_id, status=AdvertiserStatus.ACTIVE, updated_at=now)
        )
        return before

    async def end_users_of_grants(
        self, grant_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, str | None]:
        ids = set(grant_ids)
        if not ids:
            return {}
        result = await self.session.execute(
            sa.select(col(Grant.id), col(Grant.end_user)).where(col(Grant.id).in_(ids))
        )
        return {row.id: row.end_user for row in result}

    async def set_advertiser_names(
        self, grant_id: uuid.UUID, names: Mapping[str, str], now: datetime
    ) -> None:
        """Name the advertisers this grant serves, in one statement; a row whose name is
        already so is not rewritten (nor announced: the token caches ignore names)."""
        if not names:
            return
        given = (
            sa.func.unnest(_texts(names), _texts(names.values()))
            .table_valued("advertiser_id", "name")
            .render_derived("given")
        )
        await self.session.execute(
            sa.update(Advertiser)
            .where(
                col(Advertiser.advertiser_id) == given.c.advertiser_id,
                col(Advertiser.grant_id) == grant_id,
                col(Advertiser.name).is_distinct_from(given.c.name),
            )
            .values(name=given.c.name, updated_at=now)
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
            .where(col(Advertiser.advertiser_id) == sa.any_(_texts(advertiser_ids)))
            .with_for_update()
        )
        return list(result.scalars())

    async def set_advertiser_status(
        self,
        grant_id: uuid.UUID,
        advertiser_ids: Sequence[str],
        status: AdvertiserStatus,
        now: datetime,
    ) -> None:
        """Only rows this grant still serves: one moved to a newer grant meanwhile is not ours."""
        if advertiser_ids:
            await self.session.execute(
                sa.update(Advertiser)
                .where(
                    col(Advertiser.advertiser_id) == sa.any_(_texts(advertiser_ids)),
                    col(Advertiser.grant_id) == grant_id,
                )
                .values(status=status, updated_at=now)
            )

    async def lock_grant(self, grant_id: uuid.UUID) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant).where(col(Grant.id) == grant_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def lock_grants(self, grant_ids: Iterable[uuid.UUID]) -> list[Grant]:
        """These grants (those that exist), locked in id order."""
        ids = sorted(set(grant_ids))
        if not ids:
            return []
        result = await self.session.execute(
            sa.select(Grant).where(col(Grant.id).in_(ids)).order_by(col(Grant.id)).with_for_update()
        )
        return list(result.scalars())

    async def lock_grant_of_advertiser(self, advertiser_id: str) -> Grant | None:
        result = await self.session.execute(
            sa.select(Grant)
            .join(Advertiser, col(Advertiser.grant_id) == col(Grant.id))
            .where(col(Advertiser.advertiser_id) == advertiser_id)
            .with_for_update(of=Grant)
        )
        return result.scalar_one_or_none()

    async def lock_live_grants_covering(self, advertiser_id: str) -> list[Grant]:
        """Every active grant whose token TikTok would still accept for this advertiser.
        The list itself is asked too: a row locked after waiting is judged on its newest
        version, which a sync may have changed meanwhile."""
        result = await self.session.execute(
            sa.select(Grant)
            .where(
                _covering([advertiser_id]),
                col(Grant.status) == GrantStatus.ACTIVE,
                col(Grant.advertiser_ids).contains([advertiser_id]),
            )
            .order_by(col(Grant.created_at))
            .with_for_update()
        )
        return list(result.scalars())

    async def live_grants_covering_any(
        self, advertiser_ids: Sequence[str], besides: uuid.UUID
    ) -> list[uuid.UUID]:
        """Active, serving advertiser grants (other than `besides`) whose TikTok advertiser
        lists overlap `advertiser_ids`."""
        result = await self.session.execute(
            sa.select(col(Grant.id)).where(
                _covering(advertiser_ids),
                col(Grant.id) != besides,
                col(Grant.flow) == Flow.ADVERTISER,
                col(Grant.status) == GrantStatus.ACTIVE,
                col(Grant.orphaned_at).is_(None),
            )
        )
        return list(result.scalars())

    async def live_grants_sharing_advertisers(self, grant: Grant) -> list[Grant]:
        """Other active, serving grants whose TikTok advertiser lists overlap `grant`'s."""
        result = await self.session.execute(
            sa.select(Grant).where(
                _covering(grant.advertiser_ids),
                col(Grant.id) != grant.id,
                col(Grant.status) == GrantStatus.ACTIVE,
                col(Grant.orphaned_at).is_(None),
            )
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

    async def set_grant_status(self, grant: Grant, status: GrantStatus, now: datetime) -> None:
        grant.status = status
        grant.updated_at = now
        lease.release(grant)
        await self.session.flush()

    # -- Key rotation ----------------------------------------------------------------------

    async def lock_grants_to_reseal(
        self, current_key_id: str, after: uuid.UUID | None, limit: int
    ) -> list[Grant]:
        """Up to `limit` grants sealed with a key other than `current_key_id`, in id order
        after `after` (a pass walks the table once), locked for this transaction.

        SKIP LOCKED: a row another transaction holds (a refresh writing its new pair, a lease
        being taken, a revocation) is passed over instead of waited for; a later pass comes
        back to it. A row rewritten under the current key meanwhile no longer matches (the
        condition is checked again on the locked, newest version of the row)."""
        query = (
            sa.select(Grant)
            .where(col(Grant.key_id) != current_key_id)
            .order_by(col(Grant.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if after is not None:
            query = query.where(col(Grant.id) > after)
        result = await self.session.execute(query)
        return list(result.scalars())

    async def grants_per_key_id(self) -> dict[str, int]:
        """How many grants each key id seals (only key ids in use)."""
        result = await self.session.execute(
            sa.select(col(Grant.key_id), sa.func.count())
            .group_by(col(Grant.key_id))
            .order_by(col(Grant.key_id))
        )
        return {key_id: count for key_id, count in result.all()}

    async def count_sealed_with_other_keys(
        self, current_key_id: str, excluding: Sequence[uuid.UUID] = ()
    ) -> int:
        query = sa.select(sa.func.count()).where(col(Grant.key_id) != current_key_id)
        if excluding:
            query = query.where(col(Grant.id).not_in(excluding))
        return int((await self.session.execute(query)).scalar_one())
