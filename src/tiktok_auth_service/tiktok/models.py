"""Typed results of TikTok calls, parsed from the envelope's ``data`` object.

Tokens are `SecretStr` so a model can be logged or printed without leaking them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
)


def _id_to_str(value: Any) -> Any:
    # Older payloads sent advertiser ids as JSON numbers. Python's json keeps big ints exact,
    # so converting here loses nothing; ids above 2**53 are why they are strings at all.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _split_scopes(value: Any) -> Any:
    # tt_user returns scopes as one comma-separated string ("user.info.basic,video.list").
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


OpaqueId = Annotated[str, BeforeValidator(_id_to_str)]
"""An id TikTok may send as a number or a string; always kept as a string."""

ScopeNames = Annotated[list[str], BeforeValidator(_split_scopes)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class IssuedAdvertiserToken(_Frozen):
    """Result of exchanging an advertiser authorization code: a token that never expires."""

    access_token: SecretStr
    # Defaults rather than failures: the auth code is single use, so rejecting an otherwise
    # valid token over a missing list would lose the grant. The advertiser list can be
    # re-read later with `get_advertisers`.
    advertiser_ids: list[OpaqueId] = Field(default_factory=list)
    scope: list[int] = Field(default_factory=list)
    request_id: str


class AdvertiserInfo(_Frozen):
    """One advertiser (ad account) that authorized the app for a token."""

    advertiser_id: OpaqueId
    advertiser_name: str = ""


class AdvertiserList(_Frozen):
    """The ``data`` of ``oauth2/advertiser/get/``."""

    # Required: an absent list must not read as "every advertiser withdrew".
    advertisers: list[AdvertiserInfo] = Field(alias="list")


class AccountTokenData(_Frozen):
    """The raw ``data`` of the tt_user token and refresh endpoints.

    Also reads the v1.2 names (``creator_id``, ``expires``, ``refresh_expires``), assuming the
    latter two were lifetimes in seconds like their v1.3 successors.
    """

    access_token: SecretStr
    refresh_token: SecretStr
    open_id: str = Field(validation_alias=AliasChoices("open_id", "creator_id"))
    scope: ScopeNames = Field(default_factory=list)
    token_type: str = "Bearer"  # noqa: S105  (a scheme name, not a credential)
    expires_in: int = Field(validation_alias=AliasChoices("expires_in", "expires"))
    refresh_token_expires_in: int = Field(
        validation_alias=AliasChoices("refresh_token_expires_in", "refresh_expires")
    )


class IssuedAccountTokens(_Frozen):
    """A TikTok-account (tt_user) token pair with absolute expiry times.

    ``refresh_expires_at`` counts from the original grant: TikTok does not extend it on refresh.
    """

    access_token: SecretStr
    refresh_token: SecretStr
    open_id: str
    scope: list[str]
    token_type: str
    expires_at: AwareDatetime
    refresh_expires_at: AwareDatetime
    request_id: str

    @classmethod
    def from_token_data(
        cls, data: AccountTokenData, *, received_at: datetime, request_id: str
    ) -> IssuedAccountTokens:
        """Anchor TikTok's relative lifetimes at the moment the response arrived."""
        return cls(
            access_token=data.access_token,
            refresh_token=data.refresh_token,
            open_id=data.open_id,
            scope=data.scope,
            token_type=data.token_type,
            expires_at=received_at + timedelta(seconds=data.expires_in),
            refresh_expires_at=received_at + timedelta(seconds=data.refresh_token_expires_in),
            request_id=request_id,
        )
