"""Token endpoints for internal services. GET is the hot path: answered by `CachedTokenReads`,
from the token cache or with one query, and serialised once; its errors by the route."""

from __future__ import annotations

import re
import time
from typing import Annotated

import orjson
from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import (
    API_KEY_SECURITY,
    api_key_from,
    api_key_of,
    app_service,
    service_of,
)
from tiktok_auth_service.api.observability import caller_of, observe, request_id_for
from tiktok_auth_service.api.problems import problem_responses
from tiktok_auth_service.api.security import NO_STORE, RAW_PAGE_HEADERS
from tiktok_auth_service.api_keys import ADVERTISER_ID, OPEN_ID
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.revocation import AccountRevocation, Revocation
from tiktok_auth_service.tokens import AccountToken, AdvertiserToken

router = APIRouter(prefix="/tokens", tags=["tokens"])

AdvertiserId = Annotated[
    str,
    Path(
        pattern=f"^{ADVERTISER_ID}$",
        description="TikTok advertiser id (digits, as a string).",
        examples=["7100000000000000001"],
    ),
]
OpenId = Annotated[
    str,
    Path(pattern=f"^{OPEN_ID}$", description="The TikTok account's open_id."),
]


# What every token route can answer besides its body; reads also answer 409.
_ACCESS_ERRORS = (
    errors.Unauthenticated,
    errors.Forbidden,
    errors.NotConnected,
    errors.ValidationFailed,
    errors.DatabaseUnavailable,
    errors.TokenUnreadable,
)
_READ_ERRORS = (*_ACCESS_ERRORS, errors.ReauthorizationRequired)


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers=NO_STORE)


@router.get(
    "/accounts/{open_id}",
    summary="Get a TikTok account's token",
    response_model=None,
    openapi_extra=API_KEY_SECURITY,
    responses={
        200: {"model": AccountToken, "description": "A token valid for the time asked."},
        **problem_responses(*_READ_ERRORS, errors.UpstreamUnavailable),
    },
)
async def get_account_token(
    open_id: OpenId,
    request: Request,
    min_valid_for: Annotated[
        int | None,
        Query(
            ge=0,
            le=3600,
            description="Seconds the token must stay valid (at most an hour, so callers cannot "
            "make every read a refresh); at least REFRESH_LEEWAY_SECONDS. Refreshed first when "
            "it would not.",
        ),
    ] = None,
) -> Response:
    """The access token of a TikTok account (tt_user), refreshed when needed."""
    token = await service_of(request).tokens.get_account_token(
        api_key_of(request), open_id, min_valid_for, caller_of(request)
    )
    return _json(token)


@router.get(
    "/{advertiser_id}",
    summary="Get an advertiser's token",
    response_model=None,
    openapi_extra=API_KEY_SECURITY,
    responses={
        200: {"model": AdvertiserToken, "description": "A token that works now."},
        **problem_responses(*_READ_ERRORS),
    },
)
async def get_advertiser_token(advertiser_id: AdvertiserId, request: Request) -> Response:
    """The access token that serves this advertiser."""
    error = request.scope.pop(_READ_ERROR, None)
    if error is not None:  # the read ran in CachedTokenReads, and was counted there
        raise error
    token = await service_of(request).tokens.get_advertiser_token(
        api_key_of(request), advertiser_id, caller_of(request)
    )
    return _json(token)


@router.post(
    "/{advertiser_id}/check",
    summary="Check an advertiser's token at TikTok now",
    response_model=None,
    openapi_extra=API_KEY_SECURITY,
    responses={
        200: {"model": AdvertiserToken, "description": "TikTok confirmed the token works."},
        **problem_responses(*_READ_ERRORS, errors.RateLimited, errors.UpstreamUnavailable),
    },
)
async def check_advertiser_token(advertiser_id: AdvertiserId, request: Request) -> Response:
    """Ask TikTok now whether the token serving this advertiser works (for a consumer that
    just got 40105), syncing its advertiser list; 409 if it died. The call spends the TikTok
    call budget every other call spends (budget.py): 429 with `Retry-After` when no slot
    comes within a few seconds. Concurrent checks of one grant share one call."""
    token = await service_of(request).tokens.check_advertiser_token(
        api_key_of(request), advertiser_id, caller_of(request)
    )
    return _json(token)


@router.delete(
    "/accounts/{open_id}",
    summary="Revoke a TikTok account's authorization",
    response_model=AccountRevocation,
    openapi_extra=API_KEY_SECURITY,
    responses=problem_responses(*_ACCESS_ERRORS, errors.UpstreamUnavailable),
)
async def revoke_account_token(open_id: OpenId, request: Request) -> Response:
    """End this TikTok account's authorization at TikTok (its refresh chain dies with it).

    Idempotent: repeating it answers 200 with `revoked_now: false`.
    """
    revocation = await service_of(request).revoker.revoke_account(
        api_key_of(request), open_id, caller_of(request)
    )
    return _json(revocation)


@router.delete(
    "/{advertiser_id}",
    summary="Revoke every token that works for an advertiser",
    response_model=Revocation,
    openapi_extra=API_KEY_SECURITY,
    responses=problem_responses(*_ACCESS_ERRORS, errors.UpstreamUnavailable),
)
async def revoke_advertiser_token(advertiser_id: AdvertiserId, request: Request) -> Response:
    """Revoke at TikTok every token that still works for this advertiser, ending the service
    of every advertiser those tokens serve (all are listed).

    Idempotent: repeating it answers 200 with `revoked_now: false`.
    """
    revocation = await service_of(request).revoker.revoke_advertiser(
        api_key_of(request), advertiser_id, caller_of(request)
    )
    return _json(revocation)


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
                scope[_READ_ERROR] = exc
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


# What `_json` answers with besides the length, as ASGI header lines.
_JSON_HEADERS = [
    (b"content-type", b"application/json"),
    *[(name.lower().encode(), value.encode()) for name, value in NO_STORE.items()],
]
_READ_ERROR = "tiktok_auth_service.token_read_error"  # scope key: see CachedTokenReads
_ADVERTISER_TOKEN_PATH = re.compile(f"{router.prefix}/({ADVERTISER_ID})")
_ADVERTISER_TOKEN_ROUTE: BaseRoute = next(
    route for route in router.routes if getattr(route, "endpoint", None) is get_advertiser_token
)
