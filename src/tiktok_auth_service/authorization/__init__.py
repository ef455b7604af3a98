"""Connecting advertisers and TikTok accounts: the browser leg of OAuth."""

from .flows import AccountFlow, AdvertiserFlow, Connected, ConsentFlow
from .service import Authorization, AuthorizationResult, AuthorizationStart, CallbackParams

__all__ = [
    "AccountFlow",
    "AdvertiserFlow",
    "Authorization",
    "AuthorizationResult",
    "AuthorizationStart",
    "CallbackParams",
    "Connected",
    "ConsentFlow",
]
