"""Response shapes, declared for the OpenAPI document (the hot path serialises directly)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AdvertiserTokenOut(BaseModel):
    advertiser_id: str = Field(description="The advertiser (ad account) id, a string of digits.")
    access_token: str = Field(description="Send as the `Access-Token` header to TikTok.")
    expires_at: datetime | None = Field(
        description="When the token stops working; null: advertiser tokens never expire by time "
        "and die only by revocation."
    )
    scope: list[int] = Field(description="TikTok permission ids granted.")
    status: Literal["active"]


class AccountTokenOut(BaseModel):
    open_id: str = Field(description="The TikTok account id.")
    access_token: str = Field(description="Send as the `Access-Token` header to TikTok.")
    expires_at: datetime = Field(description="When the access token expires (24 h after issue).")
    refresh_expires_at: datetime | None = Field(
        description="When the refresh token dies (one year after the first grant); after it "
        "the user must authorize again."
    )
    scope: list[str]
    status: Literal["active", "refresh_expiring"] = Field(
        description="`refresh_expiring`: re-authorization will be needed within "
        "REFRESH_EXPIRY_WARNING_DAYS."
    )


class RevocationOut(BaseModel):
    advertiser_ids: list[str] = Field(
        description="Every advertiser served by the revoked token (TikTok revokes per grant)."
    )
    status: Literal["revoked"]
    revoked_now: bool = Field(description="False when the grant was already revoked.")


class Health(BaseModel):
    status: str
