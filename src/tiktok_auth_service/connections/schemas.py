"""The answer bodies of GET /connections and the tags a connection carries: slotted dataclasses
that orjson serialises directly and that are also the OpenAPI schemas (as in
`tokens/schemas.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from tiktok_auth_service.models.grants import Flow, GrantStatus

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
