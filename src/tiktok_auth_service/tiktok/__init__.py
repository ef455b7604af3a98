"""TikTok API for Business client: the only package that talks HTTP to TikTok."""

from .client import TikTokClient
from .errors import (
    AccessTokenExpired,
    AccessTokenInvalid,
    Endpoint,
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
    Verdict,
)
from .exchange import http_client
from .models import AdvertiserInfo, IssuedAccountTokens, IssuedAdvertiserToken
from .retry import RetryPolicy

__all__ = [
    "AccessTokenExpired",
    "AccessTokenInvalid",
    "AdvertiserInfo",
    "Endpoint",
    "InvalidAuthCode",
    "InvalidCredentials",
    "IssuedAccountTokens",
    "IssuedAdvertiserToken",
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
    "Verdict",
    "http_client",
]
