"""Token endpoints for internal services. GET is the hot path: one query, serialised once."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import API_KEY_SECURITY, api_key_of, service_of
from tiktok_auth_service.api.problems import problem_responses
from tiktok_auth_service.tokens import AccountToken, AdvertiserToken, Revocation

router = APIRouter(prefix="/tokens", tags=["tokens"])

AdvertiserId = Annotated[
    str,
    Path(
        pattern=r"^[0-9]{1,32}$",
        description="TikTok advertiser id (digits, as a string).",
        examples=["7100000000000000001"],
    ),
]
NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "/accounts/{open_id}",
    response_model=None,
    openapi_extra=API_KEY_SECURITY,
    responses={
        200: {"model": AccountToken, "description": "A token valid for the time asked."},
        **problem_responses(
            errors.Unauthenticated,
            errors.Forbidden,
            errors.NotConnected,
            errors.ReauthorizationRequired,
            errors.DatabaseUnavailable,
            errors.UpstreamUnavailable,
        ),
        422: {"description": "Malformed parameter (`validation_error`)."},
    },
)
async def get_account_token(
    open_id: Annotated[
        str,
        Path(pattern=r"^[\x21-\x7e]{1,128}$", description="The TikTok account's open_id."),
    ],
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
        api_key_of(request), open_id, min_valid_for
    )
    return Response(orjson.dumps(token), media_type="application/json", headers=NO_STORE)


@router.get(
    "/{advertiser_id}",
    response_model=None,
    openapi_extra=API_KEY_SECURITY,
    responses={
        200: {"model": AdvertiserToken, "description": "A token that works now."},
        **problem_responses(
            errors.Unauthenticated,
            errors.Forbidden,
            errors.NotConnected,
            errors.ReauthorizationRequired,
            errors.DatabaseUnavailable,
        ),
        422: {"description": "Malformed advertiser id (`validation_error`)."},
    },
)
async def get_advertiser_token(advertiser_id: AdvertiserId, request: Request) -> Response:
    """The access token that serves this advertiser."""
    token = await service_of(request).tokens.get_advertiser_token(
        api_key_of(request), advertiser_id
    )
    return Response(orjson.dumps(token), media_type="application/json", headers=NO_STORE)


@router.delete(
    "/{advertiser_id}",
    response_model=Revocation,
    openapi_extra=API_KEY_SECURITY,
    responses=problem_responses(
        errors.Unauthenticated, errors.Forbidden, errors.NotConnected, errors.UpstreamUnavailable
    ),
)
async def revoke_advertiser_token(advertiser_id: AdvertiserId, request: Request) -> Response:
    """Revoke at TikTok the token serving this advertiser (and so every advertiser of its grant).

    Idempotent: repeating it answers 200 with `revoked_now: false`.
    """
    revocation = await service_of(request).tokens.revoke_advertiser(
        api_key_of(request), advertiser_id
    )
    return Response(orjson.dumps(revocation), media_type="application/json", headers=NO_STORE)
