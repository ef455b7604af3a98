"""The worker's queue: claiming due grants and webhook deliveries with `FOR UPDATE SKIP LOCKED`
and a lease, so replicas share the work without waiting on each other or doing it twice."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service import lease
from tiktok_auth_service.models import Flow, Grant, GrantStatus, WebhookDelivery


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

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[WebhookDelivery]:
        """Lease up to `limit` due webhook deliveries, each the oldest pending one of its
        subject and receiver, so events arrive in order per subject."""
        earlier = sa.orm.aliased(WebhookDelivery)
        waiting = sa.exists().where(
            col(earlier.url) == col(WebhookDelivery.url),
            col(earlier.subject) == col(WebhookDelivery.subject),
            col(earlier.status) == "pending",
            col(earlier.seq) < col(WebhookDelivery.seq),
        )
        due = (
            sa.select(col(WebhookDelivery.seq))
            .where(
                col(WebhookDelivery.status) == "pending",
                col(WebhookDelivery.next_attempt_at) <= now,
                sa.or_(
                    col(WebhookDelivery.lease_until).is_(None),
                    col(WebhookDelivery.lease_until) < now,
                ),
                ~waiting,
            )
            .order_by(col(WebhookDelivery.seq))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            sa.update(WebhookDelivery)
            .where(col(WebhookDelivery.seq).in_(due.scalar_subquery()))
            .values(lease_until=lease_until)
            .returning(WebhookDelivery),
            execution_options={"synchronize_session": False},
        )
        return sorted(result.scalars(), key=lambda delivery: delivery.seq or 0)

    async def outbox_backlog(self) -> int:
        result = await self.session.execute(
            sa.select(sa.func.count()).where(col(WebhookDelivery.status) == "pending")
        )
        return int(result.scalar_one())


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
