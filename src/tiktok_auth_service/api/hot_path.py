"""The hot path: GET /tokens/{advertiser_id} answered before the middleware stack and the route
(`tokens.py`), whose answer it gives byte for byte."""

from __future__ import annotations

import re
import time

import orjson
from asgi_correlation_id import correlation_id
from fastapi import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from tiktok_auth_service.api import tokens
from tiktok_auth_service.api.deps import api_key_from, app_service
from tiktok_auth_service.api.observability import caller_of, observe, request_id_for
from tiktok_auth_service.api.security import NO_STORE, RAW_PAGE_HEADERS
from tiktok_auth_service.api.tokens import READ_ERROR
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.ops.api_keys import ADVERTISER_ID


class CachedTokenReads:
    """The hot path: GET /tokens/{advertiser_id}, answered from the token cache or, on a miss,
    with the one query the read makes.

    The outermost middleware, so a served read skips every layer below it: the request id,
    observation and security-header middlewares, routing, the exception handlers and the
    route, whose wrapping cost several times the read itself (profile in bench/hot_path.py).
    What those layers give every answer it gives itself, from the same pieces: the request id
    (`request_id_for`), the security headers (`RAW_PAGE_HEADERS`), the metrics and access-log
    line (`observe`). Body and headers are the same as the route's. An error the read raises
    goes on down the stack in the scope, for the route to raise (the read is counted and
    audited once, here); so does an unacceptable X-Request-ID (its middleware logs why)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not await self._read(scope, send):
            await self.app(scope, receive, send)

    async def _read(self, scope: Scope, send: Send) -> bool:
        match = _ADVERTISER_TOKEN_PATH.fullmatch(scope["path"])
        if match is None:
            return False
        started = time.perf_counter()
        authorization = request_id = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"x-request-id" and request_id is None:
                request_id = value
        id_value = request_id_for(request_id)
        if id_value is None:
            return False
        # What CorrelationIdMiddleware sets for the logs and the audit.
        correlation_id.set(id_value)
        request = Request(scope)
        tokens, api_key, caller = (
            app_service(request.app).tokens,
            api_key_from(authorization),
            caller_of(request),
        )
        token = tokens.cached_advertiser_token(api_key, match[1], caller)
        if token is None:
            try:
                token = await tokens.get_advertiser_token(api_key, match[1], caller)
            except Exception as exc:
                scope[READ_ERROR] = exc
                return False
        body = orjson.dumps(token)
        headers = [
            (b"content-length", str(len(body)).encode()),
            *_JSON_HEADERS,
            *RAW_PAGE_HEADERS,
            (b"x-request-id", id_value.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        scope["route"] = _ADVERTISER_TOKEN_ROUTE  # for the access log and metrics
        observe(self.metrics, scope, 200, time.perf_counter() - started)
        return True


# What the route's `_json` answers with besides the length, as ASGI header lines.
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    *[(name.lower().encode(), value.encode()) for name, value in NO_STORE.items()],
]
_ADVERTISER_TOKEN_PATH = re.compile(f"{tokens.router.prefix}/({ADVERTISER_ID})")
_ADVERTISER_TOKEN_ROUTE: BaseRoute = next(
    route
    for route in tokens.router.routes
    if getattr(route, "endpoint", None) is tokens.get_advertiser_token
)
