"""Connecting advertisers and TikTok accounts: the browser leg of OAuth."""

from .flows import AccountFlow, AdvertiserFlow, Connected, ConsentFlow, Origin
from .service import (
    Authorization,
    AuthorizationResult,
    AuthorizationStart,
    CallbackParams,
    ConnectLink,
    ConnectOutcome,
    ConsentPreview,
    binding_id,
    origin_of,
)

__all__ = [
    "AccountFlow",
    "AdvertiserFlow",
    "Authorization",
    "AuthorizationResult",
    "AuthorizationStart",
    "CallbackParams",
    "ConnectLink",
    "ConnectOutcome",
    "Connected",
    "ConsentFlow",
    "ConsentPreview",
    "Origin",
    "binding_id",
    "origin_of",
]
