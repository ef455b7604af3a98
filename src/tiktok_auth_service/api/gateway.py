"""`ANY /proxy/open_api/v1.3/<path>`: the gateway's HTTP side (the use case is gateway/).

Pure ASGI, outermost like the token read's hot path: a proxied call skips routing and the
middlewares below it, and gives itself what they give every answer (the request id, the
security headers, the metrics and access-log line, problem+json for refusals). The body limit
is its own, GATEWAY_MAX_REQUEST_BYTES, not MAX_BODY_BYTES: uploads pass through here.
"""

from __future__ import annotations

import logging
import time

from asgi_correlation_id import correlation_id
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import api_key_from, app_service
from tiktok_auth_service.api.observability import (
    GATEWAY_ROUTE,
    acceptable_request_id,
    caller_of,
    new_request_id,
    observe,
)
from tiktok_auth_service.api.problems import error_response
from tiktok_auth_service.api.security import RAW_PAGE_HEADERS
from tiktok_auth_service.db import lost_connection
from tiktok_auth_service.gateway import ProxyCall
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.service import Service

log = logging.getLogger(__name__)

PATH_PREFIX = "/proxy/"
ROUTE = GATEWAY_ROUTE


class _Route:
    """What `observe` reads of a route: its template."""

    path = ROUTE


_ROUTE = _Route()


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class GatewayRequests:
    """Answers every request under /proxy/; passes anything else down the stack."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope["route"] = _ROUTE
        api_key = access_token = request_id = None
        for name, value in scope["headers"]:
            if name == b"authorization" and api_key is None:
                api_key = api_key_from(value)
            elif name == b"access-token" and access_token is None:
                access_token = value.decode("latin-1").strip() or None
            elif name == b"x-request-id" and request_id is None:
                request_id = value.decode("latin-1")
        # A caller's X-Request-ID is kept when acceptable, as everywhere.
        id_value = (
            request_id if request_id and acceptable_request_id(request_id) else new_request_id()
        )
        correlation_id.set(id_value)
        own = [*RAW_PAGE_HEADERS, (b"x-request-id", id_value.encode())]
        service = app_service(Request(scope).app)
        status = 500
        try:
            status = await self._serve(scope, receive, send, service, api_key or access_token, own)
        finally:
            observe(self.metrics, scope, status, time.perf_counter() - started)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: Service,
        api_key: str | None,
        own: list[tuple[bytes, bytes]],
    ) -> int:
        request = Request(scope)
        limit = service.settings.gateway_max_request_bytes
        try:
            body = await _body(
                scope, receive, limit, service.settings.max_body_bytes, api_key, service
            )
            call = ProxyCall(
                method=scope["method"],
                raw_path=(scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0],
                query=scope.get("query_string", b""),
                headers=scope["headers"],
                body=body,
            )
            answer = await service.gateway.forward(call, api_key, caller_of(request))
        except _ClientGone:
            return 499
        except _BodyTooLarge:
            return await _refuse(
                scope,
                receive,
                send,
                errors.PayloadTooLarge(f"Gateway request bodies are limited to {limit} bytes."),
                own,
                close=True,
            )
        except errors.ServiceError as exc:
            return await _refuse(scope, receive, send, exc, own)
        except Exception as exc:
            if lost_connection(exc):
                return await _refuse(scope, receive, send, errors.DatabaseUnavailable(), own)
            log.error("unhandled error on %s %s", scope["method"], ROUTE, exc_info=exc)
            error = errors.ServiceError("An unexpected error occurred.")
            return await _refuse(scope, receive, send, error, own)
        chunks = answer.body()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": [*answer.headers, *own],
                }
            )
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()
        return answer.status


async def _body(
    scope: Scope,
    receive: Receive,
    limit: int,
    unchecked: int,
    api_key: str | None,
    service: Service,
) -> bytes:
    """The whole body, up to `limit` bytes. Past `unchecked` (MAX_BODY_BYTES) only for a valid
    key: a caller without one cannot make the process hold more than any other route takes."""
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or int(value) > limit:
                raise _BodyTooLarge
            declared = int(value)
            break
    checked = False
    if declared is not None and declared > unchecked:
        await _known(api_key, service)
        checked = True
    parts: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        if size > unchecked and not checked:
            await _known(api_key, service)
            checked = True
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _known(api_key: str | None, service: Service) -> None:
    if not api_key or not await service.api_keys.is_active(api_key):
        raise errors.Unauthenticated()


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: errors.ServiceError,
    own: list[tuple[bytes, bytes]],
    close: bool = False,
) -> int:
    if error.status >= 500:
        log.error("%s on %s %s: %s", error.code, scope["method"], ROUTE, error.detail)
    response = error_response(Request(scope), error)
    response.raw_headers.extend(own)
    if close:
        response.headers["Connection"] = "close"
    await response(scope, receive, send)
    return error.status
