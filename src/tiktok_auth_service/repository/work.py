"""The worker's queue: claiming due grants with `FOR UPDATE SKIP LOCKED` and a lease, so
replicas share the work without waiting on each other or doing it twice."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service import lease
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus


class WorkQueries:
    session: AsyncSession

    async def claim(
        self, kind: Claim, now: datetime, lease_until: datetime, limit: int
    ) -> list[Grant]:
        """Lease up to `limit` grants due for `kind` of work, soonest first.

        `FOR UPDATE SKIP LOCKED` in the subquery lets every replica claim at once without
        waiting on each other or taking the same grant; the lease (and the version bump the
        claimer remembers) then keeps others away for the TikTok call, without a row lock.
        The ids are collected into an array first (`= ANY(ARRAY(...))`, evaluated once): as
        `IN (subquery)` the planner was free to hash-join them with a scan of the whole table,
        and did on small ones (bench/sweeps.py prints the plans).
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
            .where(col(Grant.id) == sa.any_(sa.func.array(claimable.scalar_subquery())))
            .values(**lease.claimed(lease_until))
            .returning(Grant),
            execution_options={"synchronize_session": False},
        )
        return sorted(result.scalars(), key=lambda grant: getattr(grant, due.column))


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
