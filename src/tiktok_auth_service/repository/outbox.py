"""The webhook outbox: events added in the transaction of the change they announce, claimed for
delivery with `FOR UPDATE SKIP LOCKED` and a lease, and each attempt's outcome."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service.models.outbox import WebhookDelivery


class OutboxQueries:
    session: AsyncSession

    def enqueue(self, deliveries: Iterable[WebhookDelivery]) -> None:
        """Add these deliveries to the outbox; they are written with the transaction."""
        self.session.add_all(list(deliveries))

    async def lock_delivery(self, seq: int | None) -> WebhookDelivery | None:
        return await self.session.get(WebhookDelivery, seq, with_for_update=True)

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
