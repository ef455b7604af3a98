"""What a key may read: the advertisers and TikTok accounts connected, without their tokens.

The answer bodies are slotted dataclasses that orjson serialises directly and that are also
the OpenAPI schemas (as in tokens.py). Pages are cut by the (flow, subject id) of their last
item: the `next` cursor is that pair, base64url-encoded JSON. It is opaque to callers, so its
form may change; a cursor that does not decode is a 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import Field, StringConstraints

from tiktok_auth_service import errors
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Flow, GrantStatus
from tiktok_auth_service.repository import ConnectionRow, read_connections

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

# Tags: at most MAX_TAGS, keys of 1-64 characters without a colon (a filter is `key:value`),
# values of at most 255; printable, since PostgreSQL's jsonb cannot hold a NUL.
MAX_TAGS = 10
_PRINTABLE = r"\x00-\x1f\x7f"
TagKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=f"^[^:{_PRINTABLE}]*$")
]
TagValue = Annotated[str, StringConstraints(max_length=255, pattern=f"^[^{_PRINTABLE}]*$")]
# What `GET /connections?tag=` takes: one key and its value, split at the first colon.
TagFilter = Annotated[
    str, StringConstraints(pattern=f"^[^:{_PRINTABLE}]{{1,64}}:[^{_PRINTABLE}]{{0,255}}$")
]
TAGS_DESCRIPTION = (
    "Your labels for the connection (e.g. your tenant's id): at most 10, keys of 1-64 "
    "characters without a colon, values of at most 255."
)
Tags = Annotated[dict[str, str], Field(description=TAGS_DESCRIPTION)]


def tag_filter(filters: list[str]) -> dict[str, str]:
    """The tags `key:value` filters ask for, as one object. Raises ValidationFailed for one key
    asked with two values (a connection has one value per key)."""
    wanted: dict[str, str] = {}
    for item in filters:
        key, _, value = item.partition(":")
        if wanted.setdefault(key, value) != value:
            raise errors.ValidationFailed(f"tag: {key!r} is asked with two values.")
    return wanted


@dataclass(frozen=True, slots=True)
class LastFailure:
    """The last refresh or liveness check that failed since the connection's last success."""

    at: Annotated[datetime, Field(description="When it failed.")]
    tiktok_code: Annotated[
        int | None,
        Field(
            description="TikTok's error code; null when TikTok gave none (no answer, an HTTP "
            "error, or a failure on this side, such as a token that does not decrypt)."
        ),
    ]
    message: Annotated[str, Field(description="TikTok's message as TikTok gave it (or ours).")]
    attempts: Annotated[int, Field(description="Failed attempts in a row, this one included.")]


@dataclass(frozen=True, slots=True)
class Connection:
    """One advertiser or TikTok account the key may read. Never carries a token."""

    flow: Annotated[
        Flow,
        Field(description="`advertiser` (an ad account) or `tiktok_account`."),
    ]
    subject_id: Annotated[
        str,
        Field(
            description="The advertiser id (advertiser flow) or the open_id (TikTok account): "
            "what GET /tokens/{advertiser_id} or /tokens/accounts/{open_id} takes."
        ),
    ]
    status: Annotated[
        GrantStatus,
        Field(
            description="`active`: its token is served. `reauthorization_required`: the "
            "grant died at TikTok, or TikTok no longer lists this advertiser for it. "
            "`revoked`: ended through DELETE /tokens/...; a new authorization brings it back."
        ),
    ]
    name: Annotated[str | None, Field(description="The advertiser's name; null for accounts.")]
    scope: Annotated[
        list[int | str],
        Field(description="Permission ids (advertisers) or scope names (accounts) granted."),
    ]
    expires_at: Annotated[
        datetime | None,
        Field(description="When the access token expires; null for advertiser tokens."),
    ]
    refresh_expires_at: Annotated[
        datetime | None,
        Field(description="When the refresh token dies (accounts); null for advertisers."),
    ]
    last_checked_at: Annotated[
        datetime | None, Field(description="When TikTok last confirmed the token works.")
    ]
    created_at: Annotated[datetime, Field(description="When this subject was first connected.")]
    updated_at: Annotated[
        datetime, Field(description="When this connection or its grant last changed.")
    ]
    connected_by: Annotated[
        str | None,
        Field(description="Name of the API key that opened the connect session, if one did."),
    ]
    end_user: Annotated[
        str | None, Field(description="The `end_user` label given when the session was opened.")
    ]
    tags: Tags
    last_failure: Annotated[
        LastFailure | None,
        Field(
            description="null, or the last refresh or liveness failure since the last success "
            "(transient or terminal); a success clears it."
        ),
    ]
    next_attempt_at: Annotated[
        datetime | None,
        Field(
            description="When the worker next refreshes (accounts) or checks (advertisers) the "
            "token: after a failure, when it tries again. null when it no longer will (the "
            "grant needs re-authorization or was revoked)."
        ),
    ]


@dataclass(frozen=True, slots=True)
class ConnectionPage:
    """The answer of GET /connections, ordered by flow, then subject id."""

    items: list[Connection]
    next: Annotated[
        str | None,
        Field(description="Pass as `next` for the following page; null on the last page."),
    ]


def encode_cursor(flow: str, subject_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([flow, subject_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises ValidationFailed for anything `encode_cursor` did not make."""
    try:
        value: Any = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] not in tuple(Flow)
        or not isinstance(value[1], str)
    ):
        raise errors.ValidationFailed("next: not a cursor from a previous page of this list.")
    return value[0], value[1]


@dataclass(eq=False)
class Connections:
    db: Database

    async def list(
        self,
        api_key: str | None,
        *,
        status: GrantStatus | None = None,
        flow: Flow | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
        healthy: bool | None = None,
        tags: list[str] | None = None,
    ) -> ConnectionPage:
        """A page of what this key may read: everything for an unrestricted key, only its
        listed advertisers and accounts for a restricted one; `healthy` (served, and no
        failure since the last success) or not; carrying every `key:value` of `tags`.
        Raises Unauthenticated, ValidationFailed (a bad cursor or tag filter)."""
        if not api_key:
            raise errors.Unauthenticated()
        after = decode_cursor(cursor) if cursor is not None else None
        rows = await read_connections(
            self.db,
            digest(api_key),
            status=None if status is None else str(status),
            flow=None if flow is None else str(flow),
            after=after,
            limit=limit + 1,  # one more than asked: is there a next page?
            healthy=healthy,
            tags=tag_filter(tags or []),
        )
        if rows is None:
            raise errors.Unauthenticated()
        page = rows[:limit]
        more = len(rows) > limit
        return ConnectionPage(
            items=[_connection(row) for row in page],
            next=encode_cursor(page[-1].flow, page[-1].subject_id) if more else None,
        )


def _connection(row: ConnectionRow) -> Connection:
    return Connection(
        flow=Flow(row.flow),
        subject_id=row.subject_id,
        status=GrantStatus(row.status),
        name=row.name,
        scope=list(row.scope),
        expires_at=row.expires_at,
        refresh_expires_at=row.refresh_expires_at,
        last_checked_at=row.last_checked_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        connected_by=row.connected_by,
        end_user=row.end_user,
        tags=row.tags,
        last_failure=None
        if row.last_failure_at is None or row.last_failure_message is None
        else LastFailure(
            at=row.last_failure_at,
            tiktok_code=row.last_failure_code,
            message=row.last_failure_message,
            attempts=row.failures,
        ),
        next_attempt_at=row.next_attempt_at,
    )
