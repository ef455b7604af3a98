"""Internal callers' API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

from .columns import timestamp


class ApiKey(SQLModel, table=True):
    """An internal caller's API key. Only the SHA-256 of the key is stored. The table keeps
    its first name, `api_client` (and the grants' `api_client_id`): renaming it needs a
    migration for no change of meaning."""

    __tablename__ = "api_client"

    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    key_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False, unique=True))
    unrestricted: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    allowed_advertiser_ids: list[str] = Field(
        sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}")
    )
    allowed_open_ids: list[str] = Field(
        sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}")
    )
    created_at: datetime = timestamp(False)
    revoked_at: datetime | None = timestamp(True)
