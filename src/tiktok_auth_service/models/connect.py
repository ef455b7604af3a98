"""Connect sessions and the pending authorizations (states) they start."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

from .columns import TextEnum, tags, timestamp
from .grants import Flow


class SessionStatus(enum.StrEnum):
    """What came of a connect session. `expired` is never stored: a session still `pending`
    past its `expires_at` is expired."""

    PENDING = "pending"
    CONNECTED = "connected"
    DENIED = "denied"
    FAILED = "failed"
    EXPIRED = "expired"


class ConnectSession(SQLModel, table=True):
    """A single-use link an API caller opened for one person to connect their accounts, and
    what came of it."""

    __tablename__ = "connect_session"
    __table_args__ = (
        sa.UniqueConstraint("id", name="uq_connect_session_id"),
        sa.CheckConstraint(
            "status IN ('pending', 'connected', 'denied', 'failed')", name="session_status_known"
        ),
    )

    session_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, primary_key=True))
    # The public id (the link's secret is only ever stored as `session_hash`).
    id: uuid.UUID = Field(sa_column=sa.Column(sa.Uuid, nullable=False))
    flow: Flow = Field(sa_column=sa.Column(TextEnum(Flow), nullable=False))
    return_to: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    end_user: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    api_client_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("api_client.id", ondelete="CASCADE"), nullable=False
        )
    )
    created_at: datetime = timestamp(False)
    # While `pending`: when it becomes `expired`. Moved on when the link starts an
    # authorization (to that state's expiry) and when TikTok sends the browser back (past
    # the code exchange), so an outcome still on its way is never called expired.
    expires_at: datetime = timestamp(False, index=True)
    used_at: datetime | None = timestamp(True)
    status: SessionStatus = Field(
        default=SessionStatus.PENDING,
        sa_column=sa.Column(
            TextEnum(SessionStatus), nullable=False, server_default=SessionStatus.PENDING
        ),
    )
    advertiser_ids: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    open_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # The stable code of a `denied` or `failed` outcome (errors.py).
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    completed_at: datetime | None = timestamp(True)
    tags: dict[str, str] = tags()


class OAuthState(SQLModel, table=True):
    """A pending authorization: only the SHA-256 of the state and of the browser binding."""

    __tablename__ = "oauth_state"

    state_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, primary_key=True))
    flow: Flow = Field(sa_column=sa.Column(TextEnum(Flow), nullable=False))
    browser_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    return_to: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = timestamp(False)
    expires_at: datetime = timestamp(False, index=True)
    used_at: datetime | None = timestamp(True)
    # Carried over from the connect session, if one opened this authorization.
    api_client_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("api_client.id", ondelete="CASCADE"), nullable=True
        ),
    )
    end_user: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # The connect session this authorization came from, whose outcome it settles. Indexed,
    # so dropping old sessions finds their states without scanning.
    connect_session_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("connect_session.id", ondelete="CASCADE"),
            nullable=True,
            index=True,
        ),
    )
    tags: dict[str, str] = tags()
