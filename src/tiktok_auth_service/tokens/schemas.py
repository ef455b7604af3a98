"""The answer bodies of the token routes: slotted dataclasses that orjson serialises directly,
and also the OpenAPI schemas of the answers, so each body is defined once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

_ACCESS_TOKEN = Annotated[str, Field(description="Send as the `Access-Token` header to TikTok.")]
_CONNECTED_BY = Annotated[
    str | None,
    Field(description="Name of the API key that opened the connect session, if one did."),
]
_END_USER = Annotated[
    str | None, Field(description="The `end_user` label given when the session was opened.")
]
_TAGS = Annotated[
    dict[str, str], Field(description="The `tags` given when the session was opened.")
]


@dataclass(frozen=True, slots=True)
class AdvertiserToken:
    """The answer of GET /tokens/{advertiser_id} and POST /tokens/{advertiser_id}/check."""

    advertiser_id: Annotated[
        str, Field(description="The advertiser (ad account) id, a string of digits.")
    ]
    access_token: _ACCESS_TOKEN = field(repr=False)
    expires_at: Annotated[
        datetime | None,
        Field(
            description="When the token stops working; null: advertiser tokens never expire by "
            "time and die only by revocation."
        ),
    ]
    scope: Annotated[list[int], Field(description="TikTok permission ids granted.")]
    status: Literal["active"]
    last_checked_at: Annotated[
        datetime | None,
        Field(description="When TikTok last confirmed the token works (liveness check)."),
    ]
    connected_by: _CONNECTED_BY
    end_user: _END_USER
    tags: _TAGS


AccountStatus = Literal["active", "refresh_expiring"]


@dataclass(frozen=True, slots=True)
class AccountToken:
    """The answer of GET /tokens/accounts/{open_id}. Never carries the refresh token."""

    open_id: Annotated[str, Field(description="The TikTok account id.")]
    access_token: _ACCESS_TOKEN = field(repr=False)
    expires_at: Annotated[
        datetime, Field(description="When the access token expires (24 h after issue).")
    ]
    refresh_expires_at: Annotated[
        datetime | None,
        Field(
            description="When the refresh token dies (one year after the first grant); after "
            "it the user must authorize again."
        ),
    ]
    scope: list[str]
    status: Annotated[
        AccountStatus,
        Field(
            description="`refresh_expiring`: re-authorization will be needed within "
            "REFRESH_EXPIRY_WARNING_DAYS."
        ),
    ]
    connected_by: _CONNECTED_BY
    end_user: _END_USER
    tags: _TAGS


_REVOKED_NOW = Annotated[
    bool, Field(description="False when everything was already revoked (the call is idempotent).")
]


@dataclass(frozen=True, slots=True)
class Revocation:
    """The answer of DELETE /tokens/{advertiser_id}."""

    advertiser_ids: Annotated[
        list[str],
        Field(
            description="Every advertiser whose service ended: TikTok revokes per token, and "
            "every token that still worked for this advertiser was revoked."
        ),
    ]
    status: Literal["revoked"]
    revoked_now: _REVOKED_NOW


@dataclass(frozen=True, slots=True)
class AccountRevocation:
    """The answer of DELETE /tokens/accounts/{open_id}."""

    open_id: str
    status: Literal["revoked"]
    revoked_now: _REVOKED_NOW
