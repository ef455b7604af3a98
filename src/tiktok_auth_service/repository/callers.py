"""Internal callers' API keys (`api_client`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service.models.callers import ApiKey


class CallerQueries:
    session: AsyncSession

    async def api_key(self, client_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, client_id)

    async def api_key_by_name(self, name: str) -> ApiKey | None:
        result = await self.session.execute(sa.select(ApiKey).where(col(ApiKey.name) == name))
        return result.scalar_one_or_none()

    async def list_api_keys(self) -> Sequence[ApiKey]:
        result = await self.session.execute(sa.select(ApiKey).order_by(col(ApiKey.name)))
        return result.scalars().all()

    async def api_key_by_key_hash(self, key_hash: bytes) -> ApiKey | None:
        result = await self.session.execute(
            sa.select(ApiKey).where(
                col(ApiKey.key_hash) == key_hash,
                col(ApiKey.revoked_at).is_(None),
            )
        )
        return result.scalar_one_or_none()
