"""What every request leaves behind: a request id, one access-log line and its metrics.

The HTTP server's own access log stays off (granian's in `serve`, uvicorn's in `dev`): it
prints the request line with its query string, and /callback's query carries TikTok's
single-use authorization code. This log writes the route template (`/tokens/{advertiser_id}`)
and the path without the query string, never a header but X-Request-ID, and the caller's API
key by name only.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from asgi_correlation_id import correlation_id
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiktok_auth_service.logs import ContextFilter
from tiktok_auth_service.metrics import UNMATCHED_ROUTE, Metrics
from tiktok_auth_service.tokens.reads import Caller

access_log = logging.getLogger("tiktok_auth_service.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept as it is when it is 1-128 printable ASCII characters (spaces and
# punctuation included: ids from other systems are rarely UUIDs); otherwise one is made.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")

# Probes and scrapes come every few seconds: their lines are DEBUG. So are the token reads
# that answered 200, which come thousands a second: the audit already records each of them
# (with this request id), and their line was a third of the hot path's time. Every other
# line is INFO, a failed token read's included.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
AUDITED_READS = frozenset({"/tokens/{advertiser_id}", "/tokens/accounts/{open_id}"})
# The gateway logs one line of each call itself (with TikTok's code and request id), so its
# access line is DEBUG too; but for a body refused before the call began (413).
GATEWAY_ROUTE = "/proxy/open_api/v1.3/{path}"

# Where a route leaves the caller it identified, for the access log.
_CALLER = "tiktok_auth_service.caller"


def acceptable_request_id(value: str) -> bool:
    return _ACCEPTABLE_REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """32 random hex digits, like a UUID's hex but without building one (a token read's
    microsecond)."""
    return secrets.token_hex(16)


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return correlation_id.get()


def request_id_filter() -> logging.Filter:
    """Adds `request_id` to every record logged while a request is served (TikTok calls,
    lifecycle events, errors), so its lines can be found together."""
    return ContextFilter("request_id", current_request_id)


def caller_of(request: Request) -> Caller:
    """A `Caller` for a route to hand to the use case; the access log reads its name."""
    caller = Caller()
    request.scope[_CALLER] = caller
    return caller


def request_id_for(header: bytes | None) -> str | None:
    """The id of a request whose X-Request-ID header is `header`: the caller's when acceptable,
    a new one when there is none, None when it is unacceptable (CorrelationIdMiddleware then
    makes one and logs why). For the hot path, which answers before that middleware."""
    if header is None:
        return new_request_id()
    value = header.decode("latin-1")
    return value if acceptable_request_id(value) else None


def observe(metrics: Metrics, scope: Scope, status: int, elapsed: float) -> None:
    """What an HTTP request leaves behind once answered: one counter increment, one histogram
    observation and one access-log line."""
    route = scope.get("route")
    template = getattr(route, "path", None) or UNMATCHED_ROUTE
    method = scope["method"]
    metrics.http_request(method, template, status, elapsed)
    quiet = (
        template in QUIET_ROUTES
        or (status == 200 and method == "GET" and template in AUDITED_READS)
        or (template == GATEWAY_ROUTE and status != 413)
    )
    level = logging.DEBUG if quiet else logging.INFO
    if access_log.isEnabledFor(level):
        caller = scope.get(_CALLER)
        name = caller.name if caller is not None else None
        client = scope.get("client")
        duration_ms = round(elapsed * 1000, 2)
        access_log.log(
            level,
            "%s %s %d %.1fms%s",
            method,
            template,
            status,
            duration_ms,
            f" key={name}" if name else "",
            extra={
                "event": "request",
                "method": method,
                "route": template,
                # Without the query string, which may carry TikTok's auth code.
                "path": scope["path"],
                "status": status,
                "duration_ms": duration_ms,
                "api_key_name": name,
                "client": client[0] if client else None,
            },
        )


class ObservedRequests:
    """Pure ASGI middleware (no task or body buffering on the way): `observe` after each HTTP
    request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Stays 500 if the app raises before answering (the outer error middleware then
        # sends a 500).
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            observe(self.metrics, scope, status, time.perf_counter() - started)
