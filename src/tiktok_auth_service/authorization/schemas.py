"""What the connect routes answer and what the browser leg passes around: the connect link and
a session's outcome (also the OpenAPI schemas), the consent preview, the start of an
authorization, the callback's parameters and its result."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from pydantic import Field

from tiktok_auth_service import errors
from tiktok_auth_service.models.connect import ConnectSession, SessionStatus
from tiktok_auth_service.models.grants import Flow


@dataclass(frozen=True)
class AuthorizationStart:
    """TikTok's consent URL, and the browser binding to set as the cookie named for `state`
    (see `binding_id`)."""

    url: str
    state: str
    browser_binding: str


@dataclass(frozen=True)
class ConsentPreview:
    """What the page of GET /authorize offers: the flow the person would continue with, and
    the origin of its TikTok consent page (where the page's form is redirected to)."""

    flow: Flow
    consent_origin: str


_SESSION_ID = (
    "The session's id (not a secret, and it opens nothing): the redirect back to `return_to` "
    "carries it as `session_id`; GET /connect-sessions/{session_id} with this key says what "
    "came of it."
)


@dataclass(frozen=True, slots=True)
class ConnectLink:
    """The answer of POST /connect-sessions."""

    id: Annotated[uuid.UUID, Field(description=_SESSION_ID)]
    url: Annotated[str, Field(description="Send the person's browser here; it works once.")]
    expires_at: Annotated[datetime, Field(description="The link stops working then.")]


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """The answer of GET /connect-sessions/{session_id}: what came of a connect session, as
    this service recorded it (not as a browser's query string claims)."""

    id: Annotated[uuid.UUID, Field(description=_SESSION_ID)]
    status: Annotated[
        SessionStatus,
        Field(
            description="`pending` (nothing came of it yet), `connected`, `denied` (the person "
            "declined at TikTok), `failed` (see `error`), or `expired` (still pending at "
            "`expires_at`: the link was not used, or the authorization did not come back)."
        ),
    ]
    flow: Flow
    advertiser_ids: Annotated[
        list[str],
        Field(description="`connected`, advertiser flow: the advertisers now served; else []."),
    ]
    open_id: Annotated[
        str | None, Field(description="`connected`, TikTok-account flow: the account; else null.")
    ]
    error: Annotated[
        str | None,
        Field(
            description="`denied` or `failed`: the stable code the redirect carried as "
            "`error` (`authorization_denied`, `authorization_failed`, `forbidden`, "
            "`app_credentials_rejected`, `upstream_unavailable`); else null."
        ),
    ]
    end_user: Annotated[str | None, Field(description="Your label from POST /connect-sessions.")]
    tags: Annotated[dict[str, str], Field(description="Your tags from POST /connect-sessions.")]
    created_at: datetime
    expires_at: Annotated[
        datetime,
        Field(
            description="A session still pending then is `expired`. It moves on when the "
            "person continues to TikTok, and again when TikTok sends them back."
        ),
    ]
    started_at: Annotated[
        datetime | None, Field(description="When the person continued to TikTok.")
    ]
    completed_at: Annotated[datetime | None, Field(description="When the outcome was recorded.")]

    @classmethod
    def of(cls, row: ConnectSession, now: datetime) -> ConnectOutcome:
        """The outcome of `row` as of `now` (a pending session past its expiry: expired)."""
        status = row.status
        if status == SessionStatus.PENDING and row.expires_at <= now:
            status = SessionStatus.EXPIRED
        return cls(
            id=row.id,
            status=status,
            flow=row.flow,
            advertiser_ids=list(row.advertiser_ids),
            open_id=row.open_id,
            error=row.error,
            end_user=row.end_user,
            tags=row.tags,
            created_at=row.created_at,
            expires_at=row.expires_at,
            started_at=row.used_at,
            completed_at=row.completed_at,
        )


@dataclass(frozen=True)
class CallbackParams:
    """What TikTok sent back to /callback, untouched."""

    state: str | None
    auth_code: str | None
    code: str | None
    error: str | None
    error_description: str | None


@dataclass(frozen=True)
class AuthorizationResult:
    flow: Flow
    return_to: str | None
    advertiser_ids: list[str] = field(default_factory=list)
    open_id: str | None = None
    error: errors.ServiceError | None = None
    # The connect session this authorization came from (None without one).
    session_id: uuid.UUID | None = None
    # The tags the grant was given (from the connect session).
    tags: dict[str, str] = field(default_factory=dict)
