"""What every request leaves behind: a request id, one access-log line and its metrics.

uvicorn's own access log stays off: it prints the request line with its query string, and
/callback's query carries TikTok's single-use authorization code. This log writes the route
template (`/tokens/{advertiser_id}`) and the path without the query string, never a header
but X-Request-ID, and the caller's API key by name only.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from asgi_correlation_id import correlation_id
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiktok_auth_service.audit import request_id as audit_request_id
from tiktok_auth_service.logs import ContextFilter
from tiktok_auth_service.metrics import UNMATCHED_ROUTE, Metrics
from tiktok_auth_service.tokens import Caller

access_log = logging.getLogger("tiktok_auth_service.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept as it is when it is 1-128 printable ASCII characters (spaces and
# punctuation included: ids from other systems are rarely UUIDs); otherwise one is made.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,128}")

# Probes and scrapes come every few seconds: their lines are DEBUG, every other one INFO.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

# Where a route leaves the caller it identified, for the access log.
_CALLER = "tiktok_auth_service.caller"


def acceptable_request_id(value: str) -> bool:
    return _ACCEPTABLE_REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


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


class ObservedRequests:
    """Pure ASGI middleware (no task or body buffering on the way): after each HTTP request,
    one counter increment, one histogram observation and one access-log line."""

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

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # The audit records the request id with each token access (set here, read there).
        audit_request_id.set(correlation_id.get())
        try:
            await self.app(scope, receive, observe)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope["method"]
            self.metrics.http_request(method, template, status, elapsed)
            level = logging.DEBUG if template in QUIET_ROUTES else logging.INFO
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
