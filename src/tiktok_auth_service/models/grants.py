"""A grant (one authorization result from TikTok, its tokens sealed: see crypto.py), the
advertisers it serves and those its token covers."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

from .columns import TextEnum, tags, timestamp

# TikTok's messages are a sentence; a longer one is cut here.
FAILURE_MESSAGE_CHARS = 500


class Flow(enum.StrEnum):
    ADVERTISER = "advertiser"
    TIKTOK_ACCOUNT = "tiktok_account"


class GrantStatus(enum.StrEnum):
    ACTIVE = "active"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    REVOKED = "revoked"


class AdvertiserStatus(enum.StrEnum):
    ACTIVE = "active"
    # TikTok no longer lists this advertiser for the grant's token (the advertiser withdrew).
    REMOVED = "removed"


class Grant(SQLModel, table=True):
    """One authorization result from TikTok: an access token and (tt_user only) a refresh token."""

    __tablename__ = "oauth_grant"
    __table_args__ = (
        sa.CheckConstraint("flow IN ('advertiser', 'tiktok_account')", name="flow_known"),
        sa.CheckConstraint(
            "status IN ('active', 'reauthorization_required', 'revoked')", name="status_known"
        ),
        sa.Index(
            "uq_oauth_grant_open_id",
            "open_id",
            unique=True,
            postgresql_where=sa.text("open_id IS NOT NULL"),
        ),
        # The worker's claim queries walk these partial indexes.
        sa.Index(
            "ix_oauth_grant_refresh_due",
            "refresh_due_at",
            postgresql_where=sa.text(
                "flow = 'tiktok_account' AND status = 'active' AND open_id IS NOT NULL"
            ),
        ),
        sa.Index(
            "ix_oauth_grant_check_due",
            "next_check_at",
            postgresql_where=sa.text("flow = 'advertiser' AND status = 'active'"),
        ),
        sa.Index(
            "ix_oauth_grant_orphaned",
            "orphaned_at",
            postgresql_where=sa.text("orphaned_at IS NOT NULL AND status = 'active'"),
        ),
        # GET /connections?tag=key:value, as `tags @> {...}` (no pending list: migration 0007).
        sa.Index(
            "ix_oauth_grant_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
            postgresql_with={"fastupdate": "off"},
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    flow: Flow = Field(sa_column=sa.Column(TextEnum(Flow), nullable=False))
    open_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    key_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    access_token_enc: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    refresh_token_enc: bytes | None = Field(
        default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True)
    )
    expires_at: datetime | None = timestamp(True)
    refresh_expires_at: datetime | None = timestamp(True)
    scope: list[Any] = Field(sa_column=sa.Column(pg.JSONB, nullable=False))
    status: GrantStatus = Field(sa_column=sa.Column(TextEnum(GrantStatus), nullable=False))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False))
    created_at: datetime = timestamp(False)
    updated_at: datetime = timestamp(False)
    last_checked_at: datetime | None = timestamp(True)
    refresh_failed_at: datetime | None = timestamp(True)
    # The advertisers TikTok says this token covers (advertiser flow). Rows in `advertiser`
    # say which grant *serves* an advertiser; a newer grant may serve one this token still
    # covers, which is why revoking an advertiser looks here (through `grant_coverage`).
    advertiser_ids: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    # Who opened the connect session that produced this grant (None: no session required).
    api_client_id: uuid.UUID | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("api_client.id", ondelete="SET NULL"), nullable=True
        ),
    )
    connected_by: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    end_user: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # Account grants: when the current access token was issued, and when the worker should
    # refresh it (never before half its lifetime, whatever TikTok's expires_in).
    refreshed_at: datetime | None = timestamp(True)
    refresh_due_at: datetime | None = timestamp(True)
    # Consecutive failures of refresh or liveness check (the last one may be terminal), for
    # backoff and as `last_failure.attempts`; of revocation, for an orphan.
    failures: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    # Advertiser grants: when the liveness check is due next.
    next_check_at: datetime | None = timestamp(True)
    # A process is talking to TikTok about this grant (refresh or check) until then; nobody
    # else starts the same call meanwhile, and no row lock is held across it.
    lease_until: datetime | None = timestamp(True)
    # Replaced or left serving nobody, but its token may still work at TikTok: revoke it.
    orphaned_at: datetime | None = timestamp(True)
    # When `refresh_token.expiring` was announced (once per grant).
    expiry_warned_at: datetime | None = timestamp(True)
    tags: dict[str, str] = tags()
    # The last refresh or liveness failure since the last success (cleared by one): when,
    # TikTok's code (None: no answer from TikTok) and message. `failures` counts the attempts.
    last_failure_at: datetime | None = timestamp(True)
    last_failure_code: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer, nullable=True)
    )
    last_failure_message: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text, nullable=True)
    )

    def record_failure(self, now: datetime, code: int | None, message: str) -> None:
        """Note a failed refresh or liveness check, transient or terminal: TikTok's code
        (None: TikTok gave none) and message, never a secret (the client scrubs them)."""
        self.failures += 1
        self.last_failure_at = now
        self.last_failure_code = code
        self.last_failure_message = message[:FAILURE_MESSAGE_CHARS]

    def record_success(self) -> int:
        """Clear the failures on a refresh or check that worked; returns how many failed in a
        row before it (0: the grant was not failing)."""
        recovered = self.failures if self.last_failure_at is not None else 0
        self.failures = 0
        self.last_failure_at = self.last_failure_code = self.last_failure_message = None
        return recovered

    def log_fields(self, event: str, **more: Any) -> dict[str, Any]:
        """The structured fields of a lifecycle log line about this grant: the event, the
        grant's id and its subject (the open_id, or the advertiser ids its token covers)."""
        subject: dict[str, Any] = (
            {"open_id": self.open_id}
            if self.flow == Flow.TIKTOK_ACCOUNT
            else {"advertiser_ids": list(self.advertiser_ids)}
        )
        return {"event": event, "grant_id": str(self.id), "flow": str(self.flow), **subject, **more}


class Advertiser(SQLModel, table=True):
    """An ad account and the grant whose token currently serves it."""

    __tablename__ = "advertiser"

    advertiser_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    grant_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid,
            sa.ForeignKey("oauth_grant.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    name: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    status: AdvertiserStatus = Field(
        default=AdvertiserStatus.ACTIVE,
        sa_column=sa.Column(
            TextEnum(AdvertiserStatus), nullable=False, server_default=AdvertiserStatus.ACTIVE
        ),
    )
    created_at: datetime = timestamp(False)
    updated_at: datetime = timestamp(False)


class GrantCoverage(SQLModel, table=True):
    """One advertiser a grant's token covers: `Grant.advertiser_ids` as rows, written by
    triggers (migration 0006) in the transaction that writes the list, never by the service.

    It answers "which grants cover any of these advertisers" with an index lookup per
    advertiser. An array overlap cannot: the planner takes a thousand ids to match nearly
    every row, walks the grants, and compares two thousand-element arrays per grant (tens of
    milliseconds each)."""

    __tablename__ = "grant_coverage"
    __table_args__ = (sa.Index("ix_grant_coverage_grant_id", "grant_id"),)

    advertiser_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    grant_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("oauth_grant.id", ondelete="CASCADE"), primary_key=True
        )
    )
