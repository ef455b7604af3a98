"""The browser leg: /authorize sends a person to TikTok, /callback brings them back (with the
outcome `outcomes.py` gives)."""

from __future__ import annotations

import html
from enum import StrEnum
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import ServiceDep
from tiktok_auth_service.api.outcomes import popup_page, redirect_back, result_page
from tiktok_auth_service.api.problems import html_page, problem_responses
from tiktok_auth_service.api.security import (
    NO_STORE,
    form_page_policy,
)
from tiktok_auth_service.authorization import (
    CallbackParams,
    binding_id,
)
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.service import Service

router = APIRouter(tags=["connecting accounts"])


class Display(StrEnum):
    """How the connect link was opened: as a `page` (the result goes back by redirect to
    `return_to`), or in a `popup` (connect.js adds `display=popup`), whose result page posts
    the outcome to the opener on `return_to`'s origin and closes."""

    PAGE = "page"
    POPUP = "popup"


def binding_cookie(service: Service, state: str, kind: str = "binding") -> str:
    """The name of the browser-binding cookie of the authorization carrying `state` (one per
    authorization; `kind="display"`: the one saying it runs in a popup). Over HTTPS it carries
    the `__Host-` prefix, which browsers accept only from this exact host (Secure, Path=/, no
    Domain), so a sibling subdomain cannot plant a binding of its own."""
    prefix = f"__Host-tas_{kind}" if service.settings.secure_cookies else f"tas_{kind}"
    return f"{prefix}.{binding_id(state)}"


_START_ERRORS = (
    errors.ReturnToNotAllowed,
    errors.InvalidSession,
    errors.SessionRequired,
    errors.ValidationFailed,
    errors.DatabaseUnavailable,
)
_FLOW_TITLES = {
    Flow.ADVERTISER: "Connect your TikTok ad accounts",
    Flow.TIKTOK_ACCOUNT: "Connect your TikTok account",
}
# The fields of the page's form, which POST /authorize reads.
_FORM_FIELDS = ("session", "flow", "return_to", "display")
_DISPLAY_DESCRIPTION = (
    "`popup` when the link is opened in a popup (connect.js adds it): the result page then "
    "posts the outcome to the window that opened it, on `return_to`'s origin only, and "
    "closes. `page` (default): back to `return_to` by redirect."
)


@router.get(
    "/authorize",
    summary="Show the page that continues to TikTok's consent page",
    response_class=HTMLResponse,
    responses={
        200: {
            "description": "A page whose button (a plain form, no script) continues to "
            "TikTok: opening the link spends nothing, so a link preview cannot use it up.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        **problem_responses(*_START_ERRORS, html=True),
    },
)
async def authorize(
    service: ServiceDep,
    session: Annotated[
        str | None,
        Query(description="The link's session, from POST /connect-sessions."),
    ] = None,
    flow: Annotated[
        Flow,
        Query(
            description="Without a session only (CONNECT_SESSIONS_REQUIRED=false): "
            "`advertiser` or `tiktok_account`."
        ),
    ] = Flow.ADVERTISER,
    return_to: Annotated[
        str | None,
        Query(
            description="Without a session only: where to send the browser afterwards; must "
            "be on an allowed origin."
        ),
    ] = None,
    display: Annotated[Display, Query(description=_DISPLAY_DESCRIPTION)] = Display.PAGE,
) -> Response:
    """Check the link and show a page whose button continues to TikTok (POST /authorize).
    Writes nothing: the link is spent only when the person continues."""
    preview = await service.authorization.preview(flow, return_to, session)
    if session is not None:
        fields = {"session": session}
    else:
        fields = {"flow": str(flow), **({"return_to": return_to} if return_to else {})}
    if display == Display.POPUP:
        fields["display"] = display
    action = service.settings.public_url("authorize")
    inputs = "".join(
        f'<input type=hidden name={name} value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    page = html_page(
        _FLOW_TITLES[preview.flow],
        "<p>You will continue to TikTok, where you choose what to share with this service.</p>"
        f'<form method=post action="{html.escape(action)}">{inputs}'
        "<button type=submit>Continue to TikTok</button></form>",
    )
    page.headers["Content-Security-Policy"] = form_page_policy(
        _origin(action), preview.consent_origin
    )
    return page


@router.post(
    "/authorize",
    summary="Continue to TikTok's consent page",
    status_code=303,
    response_class=RedirectResponse,
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "session": {
                                "type": "string",
                                "description": "The link's session, from POST /connect-sessions.",
                            },
                            "flow": {
                                "type": "string",
                                "enum": [str(f) for f in Flow],
                                "description": "Without a session only.",
                            },
                            "return_to": {
                                "type": "string",
                                "description": "Without a session only; on an allowed origin.",
                            },
                            "display": {
                                "type": "string",
                                "enum": [str(d) for d in Display],
                                "default": str(Display.PAGE),
                                "description": _DISPLAY_DESCRIPTION,
                            },
                        },
                    }
                }
            },
        }
    },
    responses={
        303: {"description": "Redirect to TikTok's consent page."},
        **problem_responses(*_START_ERRORS, html=True),
    },
)
async def start_authorization(request: Request, service: ServiceDep) -> Response:
    """Start the authorization the page of GET /authorize offered (its form posts here): a
    single-use state bound to this browser by a cookie minted now, and the connect link
    spent. Redirects to TikTok's consent page."""
    fields = await _form(request)
    try:
        flow = Flow(fields.get("flow", Flow.ADVERTISER))
    except ValueError:
        raise errors.ValidationFailed("flow: must be advertiser or tiktok_account") from None
    try:
        display = Display(fields.get("display", Display.PAGE))
    except ValueError:
        raise errors.ValidationFailed("display: must be page or popup") from None
    start = await service.authorization.start(flow, fields.get("return_to"), fields.get("session"))
    response = RedirectResponse(start.url, status_code=303)
    response.headers.update(NO_STORE)
    cookies = {"binding": start.browser_binding}
    if display == Display.POPUP:
        cookies["display"] = display
    for kind, value in cookies.items():
        response.set_cookie(
            binding_cookie(service, start.state, kind),
            value,
            max_age=service.settings.state_ttl_seconds,
            httponly=True,
            samesite="lax",
            secure=service.settings.secure_cookies,
            path="/",
        )
    return response


async def _form(request: Request) -> dict[str, str]:
    """The page's form fields from an `application/x-www-form-urlencoded` body (the first of
    each; others ignored). Parsed here: FastAPI's form support needs python-multipart, for
    three short fields."""
    body = (await request.body()).decode("utf-8", "replace")
    try:
        pairs = parse_qsl(body, max_num_fields=len(_FORM_FIELDS) * 4)
    except ValueError:
        raise errors.ValidationFailed("The form has too many fields.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in _FORM_FIELDS:
            fields.setdefault(name, value)
    return fields


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.get(
    "/callback",
    summary="Where TikTok returns the browser",
    response_class=Response,
    responses={
        200: {
            "description": "Result page (no return_to). In popup mode (`display=popup` on the "
            "link) with a return_to, also for an error (with the error's status): a page "
            "whose script posts the outcome to the window that opened it, addressed to "
            "return_to's origin, and closes; without an opener it stays as the result page.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        },
        302: {
            "description": "Back to return_to with `status=connected&advertiser_ids=a,b` "
            "(advertiser flow), `status=connected&open_id=...` (TikTok-account flow) "
            "or `status=error&error=<code>`, and, for a connect link, `session_id=<id>`: "
            "confirm the outcome with GET /connect-sessions/{session_id}, not from this query."
        },
        **problem_responses(
            errors.InvalidState,
            errors.AuthorizationDenied,
            errors.AuthorizationFailed,
            errors.Forbidden,
            errors.ValidationFailed,
            errors.AppCredentialsRejected,
            errors.UpstreamUnavailable,
            errors.DatabaseUnavailable,
            errors.TokenUnreadable,
            html=True,
        ),
    },
)
async def callback(
    request: Request,
    service: ServiceDep,
    state: str | None = None,
    auth_code: str | None = None,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Response:
    """Where TikTok returns the browser. Validates the state before TikTok is ever called."""
    result = await service.authorization.complete(
        CallbackParams(state, auth_code, code, error, error_description),
        request.cookies.get(binding_cookie(service, state)) if state else None,
    )
    assert state is not None  # complete() refuses a callback without one
    display_cookie = binding_cookie(service, state, "display")
    popup = request.cookies.get(display_cookie) == Display.POPUP
    if result.return_to and popup:
        response = popup_page(result, result.return_to)
    elif result.return_to:
        response = redirect_back(result)
    elif result.error:
        raise result.error
    else:
        response = result_page(result)
    # The state is spent: its binding is of no more use to the browser.
    for name in (binding_cookie(service, state), *([display_cookie] if popup else [])):
        response.delete_cookie(
            name,
            path="/",
            secure=service.settings.secure_cookies,
            httponly=True,
            samesite="lax",
        )
    return response
