"""Internal callers' API keys (`api_client`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from tiktok_auth_service.models import ApiClient


class CallerQueries:
    session: AsyncSession

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
