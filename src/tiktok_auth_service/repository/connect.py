"""Connect sessions and the OAuth states of the browser leg."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service.models.connect import ConnectSession, OAuthState, SessionStatus


class ConnectQueries:
    session: AsyncSession

    async def connect_session(self, session_hash: bytes) -> ConnectSession | None:
        result = await self.session.execute(
            sa.select(ConnectSession).where(col(ConnectSession.session_hash) == session_hash)
        )
        return result.scalar_one_or_none()

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

    async def connect_session_by_id(self, session_id: uuid.UUID) -> ConnectSession | None:
        result = await self.session.execute(
            sa.select(ConnectSession).where(col(ConnectSession.id) == session_id)
        )
        return result.scalar_one_or_none()

    async def extend_connect_session(self, session_id: uuid.UUID, until: datetime) -> None:
        """Keep a pending session from being called expired before `until`."""
        await self.session.execute(
            sa.update(ConnectSession)
            .where(
                col(ConnectSession.id) == session_id,
                col(ConnectSession.status) == SessionStatus.PENDING,
            )
            .values(expires_at=sa.func.greatest(col(ConnectSession.expires_at), until))
        )

    async def settle_connect_session(
        self,
        session_id: uuid.UUID,
        now: datetime,
        status: SessionStatus,
        *,
        advertiser_ids: Sequence[str] = (),
        open_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record what came of a pending session; the first outcome stays."""
        await self.session.execute(
            sa.update(ConnectSession)
            .where(
                col(ConnectSession.id) == session_id,
                col(ConnectSession.status) == SessionStatus.PENDING,
            )
            .values(
                status=status,
                advertiser_ids=list(advertiser_ids),
                open_id=open_id,
                error=error,
                completed_at=now,
            )
        )

    async def delete_expired_states(self, before: datetime, sessions_before: datetime) -> int:
        """Drop the OAuth states that expired before `before` and the connect sessions (with
        their outcomes) that expired before `sessions_before`."""
        deleted = 0
        for table, cutoff in ((OAuthState, before), (ConnectSession, sessions_before)):
            result = await self.session.execute(
                sa.delete(table).where(col(table.expires_at) < cutoff)
            )
            deleted += int(result.rowcount)  # type: ignore[attr-defined]
        return deleted

    async def delete_expired_anonymous_states(self, now: datetime) -> int:
        """Drop the expired states no connect session opened (CONNECT_SESSIONS_REQUIRED
        off): anyone may create those, so none is kept past its expiry."""
        result = await self.session.execute(
            sa.delete(OAuthState).where(
                col(OAuthState.api_client_id).is_(None), col(OAuthState.expires_at) <= now
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
