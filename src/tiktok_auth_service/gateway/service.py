"""The gateway's use case: one caller's call to TikTok, forwarded with the token that serves its
subjects, paced by the app's budget, repeated only where that is safe, recorded once.

A call goes: the caller's key and the subjects (tokens.reads.authorize_read, from the token cache
when it can), one grant for all of them, then attempts. Each attempt takes a slot in the
budget first. Throttling, 5xxxx, HTTP 5xx and timeouts are repeated with the RetryPolicy's
backoff while the caller's deadline allows, but a call other than GET only when TikTok
certainly did not act on it (throttled, or the connection never made): TikTok documents no
idempotency key, and a create answered 502 may have created. The caller gets TikTok's last
answer as it came; a problem only when TikTok never answered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tiktok_auth_service import errors
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.liveness import LivenessChecker
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.ops.audit import AuditLog
from tiktok_auth_service.tiktok import (
    RetryPolicy,
    TikTokError,
    TikTokRateLimited,
    TikTokTransportError,
)
from tiktok_auth_service.tiktok.client import CallBudget
from tiktok_auth_service.tiktok.errors import error_for_code
from tiktok_auth_service.tiktok.forward import Forwarded, Forwarder
from tiktok_auth_service.tokens.cache import TokenCache
from tiktok_auth_service.tokens.reads import (
    Caller,
    SubjectKind,
    authorize_read,
    read_outcome,
    servable,
)

from .paths import endpoint_of
from .records import OTHER_ENDPOINT, CallRecord, code_label, finish
from .subjects import SUBJECT_HEADERS, Subjects, subjects_of

log = logging.getLogger(__name__)

# TikTok's answers that mean the token is dead: a liveness check confirms before the grant is.
_DEAD_TOKEN_CODES = frozenset({40104, 40105})
_THROTTLE_CODES = frozenset({40100, 40133})

# Never sent on to TikTok: the caller's credentials and cookies, the subject headers, what
# proxies in front of the broker added, and the hop-by-hop headers (RFC 9110 7.6.1).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {
    b"host",
    b"authorization",
    b"access-token",
    b"cookie",
    b"content-length",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-real-ip",
    b"x-request-id",
    b"x-broker-timeout",
    *SUBJECT_HEADERS,
}
# Never passed back: hop-by-hop headers and TikTok's cookies (for TikTok's origin, not ours).
_NOT_RETURNED = _HOP_BY_HOP | {b"set-cookie"}
CODE_HEADER = b"x-tiktok-code"
REQUEST_ID_HEADER = b"x-tiktok-request-id"
TIMEOUT_HEADER = b"x-broker-timeout"


@dataclass(frozen=True)
class ProxyCall:
    """A call as the caller sent it: the raw request target's path and query, the ASGI
    header lines (names lower-case), the whole body."""

    method: str
    raw_path: bytes
    query: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes


@dataclass(eq=False)
class ProxyAnswer:
    """TikTok's answer on its way to the caller: `headers` are TikTok's (less hop-by-hop and
    cookies) with CODE_HEADER and REQUEST_ID_HEADER added. `body()` yields it as it arrives and
    records the call when it ends (or the caller goes away)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    _forwarded: Forwarded
    _finish: Callable[[str], None]

    async def body(self) -> AsyncGenerator[bytes, None]:
        outcome = "broken_off"
        try:
            if self._forwarded.head:
                yield self._forwarded.head
            async for chunk in self._forwarded.rest():
                yield chunk
            outcome = code_label(self._forwarded)
        finally:
            await self._forwarded.close()
            self._finish(outcome)


@dataclass(eq=False)
class Gateway:
    settings: Settings
    db: Database
    sealer: TokenSealer
    cache: TokenCache
    liveness: LivenessChecker
    budget: CallBudget
    forwarder: Forwarder
    audit: AuditLog
    metrics: Metrics
    retry: RetryPolicy
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = random.random
    # Gateway-started liveness checks of each grant in the last minute (monotonic times).
    _checks: dict[uuid.UUID, deque[float]] = field(default_factory=dict)

    async def forward(self, call: ProxyCall, api_key: str | None, caller: Caller) -> ProxyAnswer:
        """Forward `call` for the caller presenting `api_key`.

        Raises, before anything is sent: PathNotAllowed, EndpointRefused, Unauthenticated,
        Forbidden, NotConnected, ReauthorizationRequired, InvalidRequest (SubjectRequired,
        SubjectsSpanGrants); RateLimited when the budget has no slot within the deadline;
        UpstreamUnavailable when TikTok never answered."""
        record = CallRecord(call.method, time.perf_counter(), caller)
        try:
            answer = await self._forward(call, api_key, record)
        except BaseException as exc:
            finish(record, read_outcome(exc), self.audit, self.metrics)
            raise
        return answer

    async def _forward(
        self, call: ProxyCall, api_key: str | None, record: CallRecord
    ) -> ProxyAnswer:
        endpoint = record.endpoint = endpoint_of(call.raw_path)
        if not api_key:
            raise errors.Unauthenticated()
        content_type = ""
        for name, value in call.headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
        subjects = subjects_of(call.query, call.headers, content_type, call.body)
        record.subjects = subjects.label()
        grant_id, flow, token = await self._token(api_key, subjects, record.caller)
        deadline = record.started + self._timeout(call.headers)
        headers = [(n, v) for n, v in call.headers if n not in _NOT_FORWARDED]
        if not any(name == b"accept-encoding" for name, _ in headers):
            # Otherwise the shared client asks for gzip on the caller's behalf, and the
            # caller gets bytes it did not ask for.
            headers.append((b"accept-encoding", b"identity"))
        headers.append((b"access-token", token.encode("latin-1")))
        forwarded = await self._attempts(call, endpoint, headers, deadline, record)
        record.status = forwarded.status
        record.tiktok_request_id = forwarded.request_id
        if forwarded.code in _DEAD_TOKEN_CODES and flow == Flow.ADVERTISER:
            try:
                await self._check_token(grant_id, deadline)
            except BaseException:
                await forwarded.close()  # the caller went away during the check
                raise
        return ProxyAnswer(
            status=forwarded.status,
            headers=_answer_headers(forwarded),
            _forwarded=forwarded,
            _finish=lambda outcome: finish(record, outcome, self.audit, self.metrics),
        )

    def _timeout(self, headers: Sequence[tuple[bytes, bytes]]) -> float:
        """The caller's deadline: GATEWAY_TIMEOUT_SECONDS, or less if X-Broker-Timeout asks."""
        limit = self.settings.gateway_timeout_seconds
        for name, value in headers:
            if name == TIMEOUT_HEADER:
                try:
                    asked = float(value)
                except ValueError:
                    asked = 0.0
                if not asked > 0:  # NaN too
                    raise errors.InvalidRequest("X-Broker-Timeout is a positive number of seconds.")
                return min(limit, asked)
        return limit

    async def _token(
        self, api_key: str, subjects: Subjects, caller: Caller
    ) -> tuple[uuid.UUID, Flow, str]:
        """The one grant serving every subject, and its token. Raises what a token read
        raises, and SubjectsSpanGrants."""
        kind: SubjectKind = "advertiser" if subjects.advertisers else "tiktok_account"
        grants = {}
        for subject in subjects.advertisers or subjects.accounts:
            row = await authorize_read(self.db, kind, api_key, subject, caller, self.cache)
            grant = servable(row)
            grants[grant.grant_id] = grant
        if len(grants) > 1:
            raise errors.SubjectsSpanGrants(
                "These advertisers are served by different authorizations; TikTok takes one "
                "token a call, so call once for each."
            )
        [grant] = grants.values()
        token = self.sealer.open_access_token(grant.grant_id, grant.key_id, grant.access_token_enc)
        flow = Flow.ADVERTISER if kind == "advertiser" else Flow.TIKTOK_ACCOUNT
        return grant.grant_id, flow, token

    async def _attempts(
        self,
        call: ProxyCall,
        endpoint: str,
        headers: list[tuple[bytes, bytes]],
        deadline: float,
        record: CallRecord,
    ) -> Forwarded:
        """Attempts until an answer that is not repeated; TikTok's last answer, or
        UpstreamUnavailable when none came."""
        caller = record.caller.name or ""
        single_use = call.method != "GET"
        waited = 0.0
        while True:
            remaining = deadline - time.perf_counter()
            await self.budget.acquire(endpoint, caller, within=max(0.0, remaining))
            record.attempts += 1
            started = time.perf_counter()
            forwarded: Forwarded | None = None
            try:
                forwarded = await self.forwarder.send(
                    call.method,
                    endpoint,
                    call.query,
                    headers,
                    call.body,
                    seconds=max(0.001, min(self.settings.tiktok_timeout_seconds, remaining)),
                )
            except TikTokTransportError as exc:
                error: TikTokError | None = exc
                outcome = exc.outcome
            else:
                error = _repeatable(forwarded)
                outcome = code_label(forwarded)
            self.metrics.tiktok_call(
                endpoint if forwarded is not None else OTHER_ENDPOINT,
                outcome,
                time.perf_counter() - started,
            )
            if error is None:
                assert forwarded is not None
                return forwarded
            cool_down = self.settings.tiktok_cool_down_seconds
            if isinstance(error, TikTokRateLimited) and error.code in _THROTTLE_CODES and cool_down:
                await self.budget.cool_down(cool_down)
            delay = self.retry.next_delay(error, record.attempts, waited, single_use, self.random)
            if delay is not None and time.perf_counter() + delay < deadline:
                log.info(
                    "gateway %s %s: %s, attempt %d repeated in %.3fs",
                    call.method,
                    endpoint,
                    outcome,
                    record.attempts,
                    delay,
                    extra={
                        "event": "gateway_retry",
                        "endpoint": endpoint,
                        "code": outcome,
                        "attempt": record.attempts,
                        "retry_in_seconds": round(delay, 3),
                    },
                )
                if forwarded is not None:
                    await forwarded.close()
                await self.sleep(delay)
                waited += delay
                continue
            if forwarded is not None:
                return forwarded
            reached = not isinstance(error, TikTokTransportError) or error.reached_tiktok
            raise errors.UpstreamUnavailable(
                "TikTok did not answer in time; the call may have been acted on."
                if reached
                else "TikTok could not be reached; try again later.",
                retry_after=1,
            )

    async def _check_token(self, grant_id: uuid.UUID, deadline: float) -> None:
        """TikTok refused the grant's token: check it now (single-flight per grant, at most
        GATEWAY_DEAD_TOKEN_CHECKS_PER_MINUTE a grant), so that once TikTok confirms, calls and
        reads are answered 409 without reaching TikTok."""
        now = time.monotonic()
        recent = self._checks.setdefault(grant_id, deque())
        while recent and now - recent[0] >= 60.0:
            recent.popleft()
        if len(recent) >= self.settings.gateway_dead_token_checks_per_minute:
            return
        recent.append(now)
        try:
            await asyncio.wait_for(
                self.liveness.check_now(grant_id),
                timeout=max(0.001, deadline - time.perf_counter()),
            )
        except errors.ReauthorizationRequired:
            # The notification does this on every replica; here it is done at once, so this
            # caller's next call is refused even before it arrives.
            self.cache.notified(f"g:{grant_id}:")
        except (errors.RateLimited, errors.UpstreamUnavailable, TimeoutError):
            pass  # no verdict now; the worker's checks and later calls try again


def _repeatable(forwarded: Forwarded) -> TikTokError | None:
    """The error of an answer the RetryPolicy may repeat, None for one it never does."""
    status = forwarded.status
    if status == 429 or status >= 500:
        return TikTokTransportError(
            f"HTTP {status}",
            retryable=True,
            status_code=status,
            reached_tiktok=status != 429,
            reason="http_429" if status == 429 else "http_5xx",
        )
    if forwarded.code:
        error = error_for_code(forwarded.code, "", forwarded.request_id)
        return error if error.retryable else None
    return None


def _answer_headers(forwarded: Forwarded) -> list[tuple[bytes, bytes]]:
    headers = [(n.lower(), v) for n, v in forwarded.headers if n.lower() not in _NOT_RETURNED]
    if forwarded.code is not None:
        headers.append((CODE_HEADER, str(forwarded.code).encode()))
    if forwarded.request_id:
        headers.append((REQUEST_ID_HEADER, forwarded.request_id.encode("latin-1")))
    return headers
