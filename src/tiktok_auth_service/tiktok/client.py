"""Async client for TikTok API for Business authorization endpoints.

One coroutine per TikTok call. Each attempt takes its slot in the budget, then makes one
exchange (`exchange.py`: HTTP status, envelope, body code, typed data); failures are the
exceptions in `tiktok_auth_service.tiktok.errors`, and retryable ones are retried with backoff.

Logging never includes the app secret, codes or tokens, nor a URL with its query string.
httpx itself logs every request URL at INFO on the ``httpx`` logger, and the advertiser/get
URL carries the app secret in its query (TikTok's design, not ours), so the application must
keep that logger at WARNING or above.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

import httpx
from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.metrics import Metrics

from .errors import TikTokError
from .exchange import Reply, parse_data, send
from .models import (
    AccountTokenData,
    AdvertiserInfo,
    AdvertiserList,
    IssuedAccountTokens,
    IssuedAdvertiserToken,
)
from .retry import DEFAULT_RETRY, RetryPolicy

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class CallBudget(Protocol):
    """The app's TikTok call budget (`tiktok_auth_service.budget.RateBudget`)."""

    async def acquire(self, endpoint: str, caller: str, *, within: float | None = None) -> None:
        """Wait for this call's slot (RateLimited when none comes `within` seconds)."""

    async def cool_down(self, seconds: float) -> None:
        """Start no call of the app, in any replica, for `seconds`."""


# TikTok throttled the app (40100) or the advertiser (40133): every replica pauses this long.
# TikTok's guidance is to try again the next second after a QPS breach.
COOL_DOWN_SECONDS = 1.0
_THROTTLED = frozenset({40100, 40133})


class TikTokClient:
    """Calls TikTok's OAuth endpoints for one developer app.

    The `httpx.AsyncClient` (timeouts, connection limits) belongs to the application; this
    client never closes it. ``sleep`` and ``random`` are injectable so retry waits can be
    observed in tests without sleeping. Every HTTP exchange (each retry too) takes a slot in
    `budget` first, as the caller "worker" (the broker's own calls), and is counted in
    `metrics` by endpoint path and outcome code, with its duration.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        app_id: str,
        app_secret: SecretStr,
        api_base_url: str,
        clock: Clock,
        metrics: Metrics,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random.random,
        budget: CallBudget | None = None,
        cool_down: float = COOL_DOWN_SECONDS,
    ) -> None:
        self._http = http
        self._budget = budget
        self._cool_down = cool_down
        self._app_id = app_id
        self._app_secret = app_secret
        self._api_base_url = api_base_url.rstrip("/")
        self._clock = clock
        self._retry = retry
        self._sleep = sleep
        self._random = random
        self._metrics = metrics

    @property
    def api_base_url(self) -> str:
        """The API base URL without a trailing slash, e.g. ``https://…/open_api/v1.3``."""
        return self._api_base_url

    # -- Marketing API (advertiser) flow ---------------------------------------------------

    async def exchange_code(self, auth_code: str) -> IssuedAdvertiserToken:
        """Exchange an advertiser authorization code for a long-term (non-expiring) token."""
        return await self._call(
            "POST",
            "/oauth2/access_token/",
            lambda reply: IssuedAdvertiserToken.model_validate(
                {**reply.data, "request_id": reply.request_id}
            ),
            json={"app_id": self._app_id, "secret": self._secret, "auth_code": auth_code},
            # Retried like any call: a repeated exchange either works or fails exactly as
            # the first attempt would have (the code is spent either way).
            sensitive=[auth_code],
        )

    async def get_advertisers(
        self, access_token: SecretStr, *, within: float | None = None
    ) -> list[AdvertiserInfo]:
        """List the advertisers that currently authorize the app for this token. `within`:
        raise RateLimited if the budget has no slot for the first attempt that soon."""
        return await self._call(
            "GET",
            "/oauth2/advertiser/get/",
            lambda reply: list(AdvertiserList.model_validate(reply.data).advertisers),
            params={"app_id": self._app_id, "secret": self._secret},
            access_token=access_token,
            within=within,
        )

    async def check_advertiser(
        self, access_token: SecretStr, advertiser_id: str, *, within: float | None = None
    ) -> None:
        """Whether the token works for this advertiser, by a read the sandbox answers too (it
        has no oauth2/advertiser/get/): one campaign of the advertiser's list. Raises like
        any call; 40104/40105 say the token is dead. `within`: as for `get_advertisers`."""
        await self._call(
            "GET",
            "/campaign/get/",
            lambda reply: None,
            params={"advertiser_id": advertiser_id, "page_size": "1"},
            access_token=access_token,
            within=within,
        )

    async def revoke(self, access_token: SecretStr) -> None:
        """Revoke a long-term advertiser token. TikTok answers 40105 if it is already dead."""
        await self._call(
            "POST",
            "/oauth2/revoke_token/",
            # The response data is undocumented and varies; success is the code alone.
            lambda reply: None,
            json={
                "app_id": self._app_id,
                "secret": self._secret,
                "access_token": access_token.get_secret_value(),
            },
            access_token=access_token,
        )

    # -- TikTok account (tt_user) flow -----------------------------------------------------
    # Same app credentials, but under the OAuth names client_id / client_secret.

    async def exchange_account_code(self, auth_code: str, redirect_uri: str) -> IssuedAccountTokens:
        """Exchange a TikTok-account authorization code for an access/refresh token pair.

        ``redirect_uri`` must be identical to the one used on the authorize URL.
        """
        return await self._call(
            "POST",
            "/tt_user/oauth2/token/",
            self._account_grant,
            json={
                "client_id": self._app_id,
                "client_secret": self._secret,
                "grant_type": "authorization_code",
                # TikTok's name for the callback's `code` value on this endpoint.
                "auth_code": auth_code,
                "redirect_uri": redirect_uri,
            },
            # Retried like any call: a repeated exchange either works or fails exactly as
            # the first attempt would have (the code is spent either way).
            sensitive=[auth_code],
        )

    async def refresh_account_token(self, refresh_token: SecretStr) -> IssuedAccountTokens:
        """Trade a refresh token for a new pair. Store the returned refresh token: it may rotate.

        The refresh expiry keeps counting from the original grant, so it is not extended.
        """
        return await self._call(
            "POST",
            "/tt_user/oauth2/refresh_token/",
            self._account_grant,
            json={
                "client_id": self._app_id,
                "client_secret": self._secret,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token.get_secret_value(),
            },
            sensitive=[refresh_token.get_secret_value()],
            single_use=True,
        )

    async def revoke_account_token(self, access_token: SecretStr) -> None:
        """Revoke a TikTok-account access token."""
        await self._call(
            "POST",
            "/tt_user/oauth2/revoke/",
            lambda reply: None,
            json={
                "client_id": self._app_id,
                "client_secret": self._secret,
                "access_token": access_token.get_secret_value(),
            },
            sensitive=[access_token.get_secret_value()],
        )

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def _secret(self) -> str:
        return self._app_secret.get_secret_value()

    @staticmethod
    def _account_grant(reply: Reply) -> IssuedAccountTokens:
        return IssuedAccountTokens.from_token_data(
            AccountTokenData.model_validate(reply.data),
            received_at=reply.received_at,
            request_id=reply.request_id,
        )

    async def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[Reply], _T],
        *,
        json: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        access_token: SecretStr | None = None,
        sensitive: list[str] | None = None,
        single_use: bool = False,
        within: float | None = None,
    ) -> _T:
        """Run one TikTok call with retries and return the parsed ``data``.

        `single_use` marks calls that spend what they send and whose failure on a repeat
        would be taken for a verdict (the rotating refresh token: a repeat after TikTok rotated
        it answers 40107, which would mark a good grant dead), so those are retried only when
        TikTok certainly did not act. `within` bounds the first attempt's wait for its slot in
        the budget (retries wait for theirs).
        """
        headers: dict[str, str] = {}
        secrets = [self._secret, *(sensitive or [])]
        if access_token is not None:
            headers["Access-Token"] = access_token.get_secret_value()
            secrets.append(headers["Access-Token"])
        waited = 0.0
        attempt = 1
        last: TikTokError | None = None
        while True:
            if self._budget is not None:
                # A retry waits for its slot only as long as the retry budget has left (a
                # cool-down after throttling may be longer): then the last error stands.
                bound = within if last is None else max(0.0, self._retry.max_total - waited)
                queued = time.perf_counter()
                try:
                    await self._budget.acquire(path.lstrip("/"), "worker", within=bound)
                except errors.RateLimited:
                    if last is None:
                        raise
                    raise last from None
                waited += time.perf_counter() - queued
            started = time.perf_counter()
            try:
                reply = await send(
                    self._http,
                    self._clock,
                    method,
                    self._api_base_url + path,
                    path,
                    json,
                    params,
                    headers,
                    secrets,
                )
                result = parse_data(parse, reply, path)
            except TikTokError as error:
                elapsed = time.perf_counter() - started
                self._metrics.tiktok_call(path, error.outcome, elapsed)
                delay = self._retry.next_delay(error, attempt, waited, single_use, self._random)
                logger.warning(
                    "TikTok %s %s failed: %s code=%s request_id=%s attempt=%d elapsed_ms=%.0f "
                    "message=%r; %s",
                    method,
                    path,
                    type(error).__name__,
                    error.outcome,
                    error.request_id,
                    attempt,
                    elapsed * 1000,
                    error.message,
                    "giving up" if delay is None else f"retrying in {delay:.3f}s",
                    extra={
                        "event": "tiktok_call",
                        "method": method,
                        "endpoint": path,
                        "code": error.outcome,
                        "tiktok_request_id": error.request_id,
                        "attempt": attempt,
                        "duration_ms": round(elapsed * 1000, 1),
                        "error": type(error).__name__,
                        "tiktok_message": error.message,
                        "retry_in_seconds": None if delay is None else round(delay, 3),
                    },
                )
                if self._budget is not None and error.code in _THROTTLED and self._cool_down:
                    await self._budget.cool_down(self._cool_down)
                if delay is None:
                    raise
                last = error
                await self._sleep(delay)
                waited += delay
                attempt += 1
            else:
                elapsed = time.perf_counter() - started
                self._metrics.tiktok_call(path, "0", elapsed)
                logger.info(
                    "TikTok %s %s ok: code=0 request_id=%s attempt=%d elapsed_ms=%.0f",
                    method,
                    path,
                    reply.request_id,
                    attempt,
                    elapsed * 1000,
                    extra={
                        "event": "tiktok_call",
                        "method": method,
                        "endpoint": path,
                        "code": "0",
                        "tiktok_request_id": reply.request_id,
                        "attempt": attempt,
                        "duration_ms": round(elapsed * 1000, 1),
                    },
                )
                return result
