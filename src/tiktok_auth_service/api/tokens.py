"""Token endpoints for internal services. GET /tokens/{advertiser_id} is the hot path: answered
by `CachedTokenReads` (`hot_path.py`), from the token cache or with one query, and serialised
once; its errors by the route here."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import (
    API_KEY_SECURITY,
    api_key_of,
    service_of,
)
from tiktok_auth_service.api.observability import caller_of
from tiktok_auth_service.api.problems import problem_responses
from tiktok_auth_service.api.security import NO_STORE
from tiktok_auth_service.ops.api_keys import ADVERTISER_ID, OPEN_ID
from tiktok_auth_service.tokens.schemas import (
    AccountRevocation,
    AccountToken,
    AdvertiserToken,
    Revocation,
)

router = APIRouter(prefix="/tokens", tags=["tokens"])
# The scope key under which the hot path hands a read's error down to the route.
READ_ERROR = "tiktok_auth_service.token_read_error"

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
    error = request.scope.pop(READ_ERROR, None)
    if error is not None:  # the read ran in the hot path, and was counted there
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
    revocation = await service_of(request).revocations.revoke_account(
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
    revocation = await service_of(request).revocations.revoke_advertiser(
        api_key_of(request), advertiser_id, caller_of(request)
    )
    return _json(revocation)
