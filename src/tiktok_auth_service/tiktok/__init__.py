"""TikTok API for Business client: the only package that talks HTTP to TikTok."""

from .client import RetryPolicy, TikTokClient
from .errors import (
    AccessTokenExpired,
    AccessTokenInvalid,
    InvalidAuthCode,
    InvalidCredentials,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    TikTokAuthError,
    TikTokError,
    TikTokRateLimited,
    TikTokRequestError,
    TikTokServerError,
    TikTokTransportError,
)
from .models import AccountGrant, AdvertiserGrant, AdvertiserInfo

__all__ = [
    "AccessTokenExpired",
    "AccessTokenInvalid",
    "AccountGrant",
    "AdvertiserGrant",
    "AdvertiserInfo",
    "InvalidAuthCode",
    "InvalidCredentials",
    "RefreshTokenExpired",
    "RefreshTokenInvalid",
    "RetryPolicy",
    "TikTokAuthError",
    "TikTokClient",
    "TikTokError",
    "TikTokRateLimited",
    "TikTokRequestError",
    "TikTokServerError",
    "TikTokTransportError",
]
