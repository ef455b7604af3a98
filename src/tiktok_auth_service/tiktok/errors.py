"""Errors raised by the TikTok client, one hierarchy for every way a TikTok call can fail.

TikTok reports almost every failure as HTTP 200 with a non-zero body ``code``; `error_for_code`
turns that code into the class the service branches on. Messages hold TikTok's own text only
(with any credential the client sent scrubbed out), never a token or the app secret.
"""

from __future__ import annotations

import enum
from typing import ClassVar

# Throttling arrives as HTTP 200 with one of these codes and no Retry-After header.
_RATE_LIMIT_CODES = frozenset({40100, 40016, 40133})

# 60001 is "system under maintenance": transient like the 5xxxx family.
_MAINTENANCE_CODE = 60001

# In the 401xx range but about the request, not about credentials: 40106 is a token used for
# an advertiser outside its grant, 40108 an unsupported grant_type.
_REQUEST_CODES_IN_AUTH_RANGE = frozenset({40106, 40108})


class Endpoint(enum.StrEnum):
    """The TikTok calls whose failure says something about the token they were made with."""

    REFRESH = "refresh"  # tt_user/oauth2/refresh_token/
    ADVERTISERS = "advertisers"  # oauth2/advertiser/get/: the advertiser token's liveness check
    REVOKE = "revoke"  # oauth2/revoke_token/, tt_user/oauth2/revoke/ (and a refresh before it)


class Verdict(enum.StrEnum):
    """What a failed call to an `Endpoint` says about its token."""

    DEAD = "dead"  # it can never work again: the user authorizes anew
    TRANSIENT = "transient"  # nothing about the token: a later try may work
    GONE = "gone"  # TikTok already refuses it: a revocation has nothing left to do


# Per call, the codes that are not transient, and what they say. 40113 (app blocked, or app and
# token mismatched) is in none on purpose: it points at our app's configuration, not at one
# grant, and taking it for a verdict would kill every grant in one sweep.
_VERDICTS: dict[Endpoint, tuple[Verdict, frozenset[int]]] = {
    # The refresh token expired (40103) or was refused (40107), or the access token was revoked.
    Endpoint.REFRESH: (Verdict.DEAD, frozenset({40103, 40105, 40107})),
    # The advertiser token is empty, invalid or revoked.
    Endpoint.ADVERTISERS: (Verdict.DEAD, frozenset({40104, 40105})),
    # A token TikTok refuses counts as revoked; 40102 (expired) is not: an account's
    # authorization is revoked through a live access token, so the revocation refreshes first.
    Endpoint.REVOKE: (Verdict.GONE, frozenset({40103, 40104, 40105, 40107})),
}


class TikTokError(Exception):
    """Base class for every failed TikTok call.

    Attributes:
        code: TikTok's body ``code``, or None when no envelope was read (transport failures).
        message: TikTok's message or a short description of the failure; never a secret.
        request_id: TikTok's ``request_id`` when the envelope carried one, for support tickets.
        retryable: whether repeating the identical request later may succeed.
    """

    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        super().__init__(message)

    @property
    def outcome(self) -> str:
        """A short label for metrics and logs: TikTok's body code, or (transport failures)
        what went wrong instead."""
        return str(self.code) if self.code is not None else "error"

    def verdict(self, endpoint: Endpoint) -> Verdict:
        """What this failure of a call to `endpoint` says about the token it was made with."""
        verdict, codes = _VERDICTS[endpoint]
        return verdict if self.code in codes else Verdict.TRANSIENT

    def __str__(self) -> str:
        prefix = f"[{self.code}] " if self.code is not None else ""
        suffix = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{prefix}{self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"request_id={self.request_id!r}, retryable={self.retryable!r})"
        )


class TikTokTransportError(TikTokError):
    """No usable envelope: network failure, timeout, HTTP error status, or a malformed body.

    Network errors, timeouts, HTTP 429 and 5xx are retryable. Any other HTTP error status
    (e.g. the 404 TikTok gives for a path without its trailing slash) and a malformed 200 body
    are not: repeating the same request would fail the same way.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        reached_tiktok: bool = True,
        reason: str = "transport",
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, retryable=retryable)
        self.status_code = status_code
        # `transport` (no HTTP answer), `http_429`, `http_4xx`, `http_5xx`, or
        # `invalid_response` (an answer that is not a TikTok envelope, or unexpected data).
        self.reason = reason
        # False only when TikTok certainly did not act on the request (no connection, or
        # turned away at the edge with 429): then even a single-use code may be sent again.
        self.reached_tiktok = reached_tiktok

    @property
    def outcome(self) -> str:
        return str(self.code) if self.code is not None else self.reason


class TikTokRateLimited(TikTokError):
    """TikTok throttled the app or advertiser (40100, 40016, 40133)."""

    default_retryable = True


class TikTokServerError(TikTokError):
    """A fault on TikTok's side (5xxxx, 60001 maintenance)."""

    default_retryable = True


class TikTokAuthError(TikTokError):
    """The 401xx authentication family: credentials, codes or tokens were refused."""


class InvalidAuthCode(TikTokAuthError):
    """The authorization code was already used, expired, or issued for another endpoint."""


class InvalidCredentials(TikTokAuthError):
    """The app id/secret pair was refused, or the app is blocked or does not own the token."""


class AccessTokenExpired(TikTokAuthError):
    """The access token is past its lifetime (TikTok-account tokens: refresh it)."""


class AccessTokenInvalid(TikTokAuthError):
    """The access token is missing, unknown, or revoked."""


class RefreshTokenExpired(TikTokAuthError):
    """The refresh token is past its one-year lifetime."""


class RefreshTokenInvalid(TikTokAuthError):
    """The refresh token is unknown, already rotated, or is an advertiser token."""


class TikTokRequestError(TikTokError):
    """Any other non-zero code: TikTok understood the request and refused it."""


_AUTH_ERRORS: dict[int, type[TikTokAuthError]] = {
    40101: InvalidCredentials,
    40102: AccessTokenExpired,
    40103: RefreshTokenExpired,
    40104: AccessTokenInvalid,
    40105: AccessTokenInvalid,
    40107: RefreshTokenInvalid,
    40110: InvalidAuthCode,
    40113: InvalidCredentials,
    40115: InvalidAuthCode,
}


def error_for_code(code: int, message: str, request_id: str | None) -> TikTokError:
    """Build the exception that matches a non-zero TikTok body ``code``."""
    cls: type[TikTokError]
    if code in _RATE_LIMIT_CODES:
        cls = TikTokRateLimited
    elif 50000 <= code < 60000 or code == _MAINTENANCE_CODE:
        cls = TikTokServerError
    elif 40100 <= code < 40200 and code not in _REQUEST_CODES_IN_AUTH_RANGE:
        cls = _AUTH_ERRORS.get(code, TikTokAuthError)
    else:
        cls = TikTokRequestError
    return cls(message or f"TikTok returned code {code}", code=code, request_id=request_id)
