"""Connecting advertisers and TikTok accounts: connect sessions (`sessions.py`), the browser leg
of OAuth (`service.py`), one object per TikTok flow (`flows.py`), and what they answer
(`schemas.py`)."""

from .account_flow import AccountFlow
from .advertiser_flow import AdvertiserFlow
from .flows import Connected, ConsentFlow, Origin
from .schemas import (
    AuthorizationResult,
    AuthorizationStart,
    CallbackParams,
    ConnectLink,
    ConnectOutcome,
    ConsentPreview,
)
from .service import Authorization, binding_id
from .sessions import ConnectSessions, origin_of

__all__ = [
    "AccountFlow",
    "AdvertiserFlow",
    "Authorization",
    "AuthorizationResult",
    "AuthorizationStart",
    "CallbackParams",
    "ConnectLink",
    "ConnectOutcome",
    "ConnectSessions",
    "Connected",
    "ConsentFlow",
    "ConsentPreview",
    "Origin",
    "binding_id",
    "origin_of",
]
