"""Database tables. Tokens are stored only as AES-GCM ciphertexts (see crypto.py)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field, SQLModel

# TikTok's messages are a sentence; a longer one is cut here.
FAILURE_MESSAGE_CHARS = 500


class Flow(enum.StrEnum):
    ADVERTISER = "advertiser"
    TIKTOK_ACCOUNT = "tiktok_account"


class GrantStatus(enum.StrEnum):
    ACTIVE = "active"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    REVOKED = "revoked"


class SessionStatus(enum.StrEnum):
    """What came of a connect session. `expired` is never stored: a session still `pending`
    past its `expires_at` is expired."""

    PENDING = "pending"
    CONNECTED = "connected"
    DENIED = "denied"
    FAILED = "failed"
    EXPIRED = "expired"


class AdvertiserStatus(enum.StrEnum):
    ACTIVE = "active"
    # TikTok no longer lists this advertiser for the grant's token (the advertiser withdrew).
    REMOVED = "removed"


def _tz(nullable: bool, **kwargs: Any) -> Any:
    return Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable, **kwargs))


def _tags() -> Any:
    """The caller's labels, string to string (bounds checked by the API): given to a connect
    session, carried by its state to the grant it produces."""
    return Field(
        default_factory=dict,
        sa_column=sa.Column(pg.JSONB, nullable=False, server_default=sa.text("'{}'")),
    )


class _TextEnum(sa.types.TypeDecorator[enum.StrEnum]):
    """A TEXT column read back as its StrEnum (the CHECK constraints keep the values known)."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, enum_type: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> enum.StrEnum | None:
        return None if value is None else self.enum_type(value)


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
    flow: Flow = Field(sa_column=sa.Column(_TextEnum(Flow), nullable=False))
    open_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    key_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    access_token_enc: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    refresh_token_enc: bytes | None = Field(
        default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True)
    )
    expires_at: datetime | None = _tz(True)
    refresh_expires_at: datetime | None = _tz(True)
    scope: list[Any] = Field(sa_column=sa.Column(pg.JSONB, nullable=False))
    status: GrantStatus = Field(sa_column=sa.Column(_TextEnum(GrantStatus), nullable=False))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False))
    created_at: datetime = _tz(False)
    updated_at: datetime = _tz(False)
    last_checked_at: datetime | None = _tz(True)
    refresh_failed_at: datetime | None = _tz(True)
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
    refreshed_at: datetime | None = _tz(True)
    refresh_due_at: datetime | None = _tz(True)
    # Consecutive failures of refresh or liveness check (the last one may be terminal), for
    # backoff and as `last_failure.attempts`; of revocation, for an orphan.
    failures: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    # Advertiser grants: when the liveness check is due next.
    next_check_at: datetime | None = _tz(True)
    # A process is talking to TikTok about this grant (refresh or check) until then; nobody
    # else starts the same call meanwhile, and no row lock is held across it.
    lease_until: datetime | None = _tz(True)
    # Replaced or left serving nobody, but its token may still work at TikTok: revoke it.
    orphaned_at: datetime | None = _tz(True)
    # When `refresh_token.expiring` was announced (once per grant).
    expiry_warned_at: datetime | None = _tz(True)
    tags: dict[str, str] = _tags()
    # The last refresh or liveness failure since the last success (cleared by one): when,
    # TikTok's code (None: no answer from TikTok) and message. `failures` counts the attempts.
    last_failure_at: datetime | None = _tz(True)
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
            _TextEnum(AdvertiserStatus), nullable=False, server_default=AdvertiserStatus.ACTIVE
        ),
    )
    created_at: datetime = _tz(False)
    updated_at: datetime = _tz(False)


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
    flow: Flow = Field(sa_column=sa.Column(_TextEnum(Flow), nullable=False))
    return_to: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    end_user: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    api_client_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid, sa.ForeignKey("api_client.id", ondelete="CASCADE"), nullable=False
        )
    )
    created_at: datetime = _tz(False)
    # While `pending`: when it becomes `expired`. Moved on when the link starts an
    # authorization (to that state's expiry) and when TikTok sends the browser back (past
    # the code exchange), so an outcome still on its way is never called expired.
    expires_at: datetime = _tz(False, index=True)
    used_at: datetime | None = _tz(True)
    status: SessionStatus = Field(
        default=SessionStatus.PENDING,
        sa_column=sa.Column(
            _TextEnum(SessionStatus), nullable=False, server_default=SessionStatus.PENDING
        ),
    )
    advertiser_ids: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    open_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # The stable code of a `denied` or `failed` outcome (errors.py).
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    completed_at: datetime | None = _tz(True)
    tags: dict[str, str] = _tags()


class OAuthState(SQLModel, table=True):
    """A pending authorization: only the SHA-256 of the state and of the browser binding."""

    __tablename__ = "oauth_state"

    state_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, primary_key=True))
    flow: Flow = Field(sa_column=sa.Column(_TextEnum(Flow), nullable=False))
    browser_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    return_to: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = _tz(False)
    expires_at: datetime = _tz(False, index=True)
    used_at: datetime | None = _tz(True)
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
    tags: dict[str, str] = _tags()


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
    created_at: datetime = _tz(False)
    revoked_at: datetime | None = _tz(True)


class RateBudget(SQLModel, table=True):
    """One budget of TikTok calls shared by every replica (`budget.py`): the whole app's
    (`scope` '') or one endpoint's. `tat` is when its next call may start (GCRA's
    theoretical arrival time), in seconds on the database's clock."""

    __tablename__ = "rate_budget"
    # Unlogged: migration 0008 says why.
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    app_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    scope: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    tat: float = Field(sa_column=sa.Column(sa.Double, nullable=False))
    # The app's last cool-down: when it ends, and how long it was (`budget.cool_down`).
    cool_until: float = Field(
        sa_column=sa.Column(sa.Double, nullable=False, server_default="-infinity")
    )
    cool_seconds: float = Field(sa_column=sa.Column(sa.Double, nullable=False, server_default="0"))


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
    at: datetime = _tz(False)
    caller: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    action: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    outcome: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    request_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    tiktok_request_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    duration_ms: float | None = Field(default=None, sa_column=sa.Column(sa.Double, nullable=True))


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one event for one receiver, written in the transaction of the change that
    caused it, delivered at least once by the worker, in order per subject and receiver."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="delivery_status_known"
        ),
        sa.Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_webhook_delivery_order", "url", "subject", "seq"),
    )

    seq: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    event_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    event_type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = _tz(False)
    status: str = Field(default="pending", sa_column=sa.Column(sa.Text, nullable=False))
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    next_attempt_at: datetime = _tz(False)
    lease_until: datetime | None = _tz(True)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    delivered_at: datetime | None = _tz(True)
