"""The audit of token reads, checks and revocations."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .columns import timestamp


class TokenAccess(SQLModel, table=True):
    """The audit record of one token read, check, revocation or proxied call: who, what, how
    it ended. Never the token. A proxied call also has TikTok's request id (when TikTok
    answered) and its duration."""

    __tablename__ = "token_access"
    __table_args__ = (
        sa.Index("ix_token_access_at", "at"),
        sa.Index("ix_token_access_subject_at", "subject", "at"),
        sa.Index("ix_token_access_caller_at", "caller", "at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    at: datetime = timestamp(False)
    caller: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    action: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    outcome: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    request_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    tiktok_request_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    duration_ms: float | None = Field(default=None, sa_column=sa.Column(sa.Double, nullable=True))
