"""GET /connections: the advertisers and TikTok accounts a key may read, never their tokens."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import API_KEY_SECURITY, api_key_of, service_of
from tiktok_auth_service.api.problems import problem_responses
from tiktok_auth_service.api.security import NO_STORE
from tiktok_auth_service.connections.schemas import ConnectionPage, TagFilter
from tiktok_auth_service.connections.service import DEFAULT_LIMIT, MAX_LIMIT
from tiktok_auth_service.models.grants import Flow, GrantStatus

router = APIRouter(tags=["connections"])


@router.get(
    "/connections",
    summary="List the advertisers and accounts this key may read",
    response_model=None,
    openapi_extra=API_KEY_SECURITY,
    responses={
        200: {"model": ConnectionPage, "description": "One page, ordered by flow and id."},
        **problem_responses(
            errors.Unauthenticated, errors.ValidationFailed, errors.DatabaseUnavailable
        ),
    },
)
async def list_connections(
    request: Request,
    status: Annotated[
        GrantStatus | None,
        Query(description="Only connections in this status (as in the items' `status`)."),
    ] = None,
    flow: Annotated[
        Flow | None, Query(description="Only advertisers, or only TikTok accounts.")
    ] = None,
    healthy: Annotated[
        bool | None,
        Query(
            description="`true`: only connections served (`active`) with no failure since "
            "their last success; `false`: only the others."
        ),
    ] = None,
    tag: Annotated[
        list[TagFilter],
        Query(
            description="`key:value` (split at the first colon): only connections whose tags "
            "hold this value for this key. Repeat it for more; all must match.",
            examples=["tenant:acme"],
        ),
    ] = [],  # noqa: B006  (FastAPI copies the default; a list is how it reads a repeated key)
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            alias="next",
            max_length=1024,
            description="The `next` of the previous page (opaque); omit for the first page.",
        ),
    ] = None,
) -> Response:
    """The advertisers and TikTok accounts connected that this key may read (an unrestricted
    key: all; a restricted one: those it lists), with status, scopes, expiries and who
    connected them, their tags and health. Never a token."""
    page = await service_of(request).connections.list(
        api_key_of(request),
        status=status,
        flow=flow,
        cursor=cursor,
        limit=limit,
        healthy=healthy,
        tags=tag,
    )
    return Response(
        orjson.dumps(page),
        media_type="application/json",
        headers=NO_STORE,
    )
