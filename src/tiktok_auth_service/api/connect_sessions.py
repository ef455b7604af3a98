"""Connect sessions over the API: an internal caller opens a single-use link for one person
(POST /connect-sessions) and confirms what came of it (GET /connect-sessions/{session_id}); the
person's browser then takes the browser leg (`browser.py`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import API_KEY_SECURITY, ServiceDep, api_key_of
from tiktok_auth_service.api.observability import caller_of
from tiktok_auth_service.api.problems import problem_responses
from tiktok_auth_service.api.security import NO_STORE
from tiktok_auth_service.authorization import ConnectLink, ConnectOutcome
from tiktok_auth_service.connections.schemas import MAX_TAGS, TAGS_DESCRIPTION, TagKey, TagValue
from tiktok_auth_service.models.grants import Flow

router = APIRouter(tags=["connecting accounts"])


class ConnectSessionRequest(BaseModel):
    flow: Flow = Field(
        default=Flow.ADVERTISER,
        description="`advertiser` (Marketing API ad accounts) or `tiktok_account`.",
    )
    return_to: str | None = Field(
        default=None,
        description="Where to send the browser afterwards; must be on an allowed origin. "
        "For a link opened in a popup (connect.js), the only origin the result is posted to.",
    )
    end_user: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Your label for the person (e.g. their user id in your product); "
        "recorded with the grant and shown with its tokens.",
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_TAGS,
        description=TAGS_DESCRIPTION + " Kept by the grant this session produces (replacing "
        "the tags of the one it re-authorizes), shown with its tokens, in GET /connections "
        "(filter with `tag=key:value`) and in every webhook's `data`.",
    )


@router.post(
    "/connect-sessions",
    summary="Open a connect link for one person",
    status_code=201,
    response_model=ConnectLink,
    openapi_extra=API_KEY_SECURITY,
    responses=problem_responses(
        errors.ReturnToNotAllowed,
        errors.Unauthenticated,
        errors.Forbidden,
        errors.PayloadTooLarge,
        errors.ValidationFailed,
        errors.DatabaseUnavailable,
    ),
)
async def create_connect_session(
    body: ConnectSessionRequest, request: Request, response: Response, service: ServiceDep
) -> ConnectLink:
    """Open a single-use link for one person to connect their accounts; send their browser
    to `url`. A restricted key may open links only for what it may read."""
    # The link works for whoever holds it: no cache may keep a copy.
    response.headers.update(NO_STORE)
    return await service.connect_sessions.open_session(
        api_key_of(request),
        body.flow,
        body.return_to,
        body.end_user,
        caller_of(request),
        tags=body.tags,
    )


@router.get(
    "/connect-sessions/{session_id}",
    summary="Confirm what came of a connect session",
    response_model=ConnectOutcome,
    openapi_extra=API_KEY_SECURITY,
    responses=problem_responses(
        errors.Unauthenticated, errors.ConnectSessionNotFound, errors.DatabaseUnavailable
    ),
)
async def get_connect_session(
    session_id: Annotated[
        str, Path(description="The `id` from POST /connect-sessions (the redirect's `session_id`).")
    ],
    request: Request,
    response: Response,
    service: ServiceDep,
) -> ConnectOutcome:
    """What came of a connect session this key opened: `pending`, `connected` (with what was
    connected), `denied`, `failed` (with the error code) or `expired`. Confirm the outcome
    here, server side, rather than trusting the redirect's query string, which anyone can
    write. Another key's session is 404, like an unknown one. Kept for 30 days after the
    session's `expires_at`."""
    response.headers.update(NO_STORE)
    return await service.connect_sessions.outcome(
        api_key_of(request), session_id, caller_of(request)
    )
