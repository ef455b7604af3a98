"""The browser leg: consent pages `/portal/auth` (advertisers), `/v2/auth/authorize/` (accounts).

A person answers with the page's form (POST to the same URL). Automated clients that do not
parse HTML add `emulator_decision=approve|deny` (and optionally `emulator_advertisers=id1,id2`
or `emulator_open_id=...`) to the GET and are answered straight away.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import pages
from .config import EmulatorApp
from .state import EmulatorState

DEFAULT_ACCOUNT_SCOPE = "user.info.basic"


class PortalError(Exception):
    """An authorization request TikTok would refuse with an error page instead of a redirect."""


@dataclass(frozen=True)
class AdvertiserRequest:
    """A valid advertiser authorization request."""

    app: EmulatorApp
    redirect_uri: str
    state: str | None
    scope: list[int]


@dataclass(frozen=True)
class AccountRequest:
    """A valid TikTok-account authorization request."""

    app: EmulatorApp
    redirect_uri: str
    state: str | None
    scope: str


@dataclass(frozen=True)
class Decision:
    """What the user chose: `approve`/`deny`, and the ticked items (None = not specified)."""

    choice: str
    selected: list[str] | None


def _known_app(state: EmulatorState, app_id: str | None) -> EmulatorApp:
    app = state.apps.get(app_id or "")
    if app is None or app.blocked:
        raise PortalError("This app does not exist or has been disabled.")
    return app


def _requested_permissions(raw: str | None, app: EmulatorApp) -> list[int]:
    if not raw:
        return list(app.scopes)
    # Legacy docs send a bracketed list such as "[1,2]"; plain "1,2" is accepted as well.
    try:
        requested = {int(part) for part in raw.strip().strip("[]").split(",") if part.strip()}
    except ValueError:
        raise PortalError("The scope parameter is not a list of permission ids.") from None
    # The user can only grant what the app has enabled; the rest is dropped silently.
    granted = [number for number in app.scopes if number in requested]
    if not granted:
        raise PortalError("None of the requested permissions is enabled for this app.")
    return granted


def parse_advertiser_request(state: EmulatorState, params: QueryParams) -> AdvertiserRequest:
    """Validate `/portal/auth` parameters; unknown ones (rid, code_challenge...) are ignored."""
    app = _known_app(state, params.get("app_id"))
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        raise PortalError("The redirect_uri is not registered for this app.")
    return AdvertiserRequest(
        app=app,
        redirect_uri=redirect_uri,
        state=params.get("state"),
        scope=_requested_permissions(params.get("scope"), app),
    )


def parse_account_request(state: EmulatorState, params: QueryParams) -> AccountRequest:
    """Validate `/v2/auth/authorize/` parameters."""
    app = _known_app(state, params.get("client_key"))
    if params.get("response_type") != "code":
        raise PortalError("response_type must be 'code'.")
    redirect_uri = params.get("redirect_uri", "")
    if app.account_redirect_uri is None or redirect_uri != app.account_redirect_uri:
        raise PortalError("The redirect_uri does not match the app's registered redirect URL.")
    names = [name.strip() for name in params.get("scope", "").split(",") if name.strip()]
    return AccountRequest(
        app=app,
        redirect_uri=redirect_uri,
        state=params.get("state"),
        scope=",".join(names) or DEFAULT_ACCOUNT_SCOPE,
    )


async def read_decision(request: Request, form_field: str, hook_param: str) -> Decision | None:
    """The user's decision from the submitted form or the test hook; None = show the page."""
    if request.method == "POST":
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        return Decision(form.get("decision", [""])[0], form.get(form_field, []))
    choice = request.query_params.get("emulator_decision")
    if choice is None:
        return None
    raw = request.query_params.get(hook_param)
    selected = None if raw is None else [part for part in raw.split(",") if part]
    return Decision(choice, selected)


def redirect_with(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    """302 to `uri` with `params` added to its query; None values are left out."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in params.items() if value is not None]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


def _error(message: str) -> HTMLResponse:
    return HTMLResponse(pages.error_page(message), status_code=400)


def _deny(state: EmulatorState, redirect_uri: str, oauth_state: str | None) -> Response:
    # The advertiser flow documents no denial redirect; Login Kit's error convention is the
    # best guess, and "no redirect at all" is the other possibility clients must survive.
    if state.config.deny_mode == "no_redirect":
        return HTMLResponse(pages.cancelled_page())
    return redirect_with(
        redirect_uri,
        {
            "error": "access_denied",
            "error_description": "The user denied the authorization request.",
            "state": oauth_state,
        },
    )


def portal_routes(state: EmulatorState) -> list[Route]:
    """Routes of both consent pages (GET shows or hook-answers, POST submits the form)."""

    async def advertiser_auth(request: Request) -> Response:
        try:
            auth = parse_advertiser_request(state, request.query_params)
        except PortalError as error:
            return _error(str(error))
        decision = await read_decision(request, "advertiser_id", "emulator_advertisers")
        if decision is None:
            return HTMLResponse(
                pages.advertiser_consent(
                    auth.app.app_id, auth.scope, list(state.advertisers.values())
                )
            )
        if decision.choice == "deny":
            return _deny(state, auth.redirect_uri, auth.state)
        if decision.choice != "approve":
            return _error("The decision must be 'approve' or 'deny'.")
        chosen = list(state.advertisers) if decision.selected is None else decision.selected
        if not chosen:
            return _error("Select at least one ad account to authorize.")
        if any(adv not in state.advertisers for adv in chosen):
            return _error("Unknown ad account selected.")
        code = state.issue_advertiser_code(auth.app, auth.redirect_uri, chosen, auth.scope)
        # TikTok sends the code twice: `auth_code` (documented) and `code` (what generic
        # OAuth clients read).
        return redirect_with(
            auth.redirect_uri, {"auth_code": code.value, "code": code.value, "state": auth.state}
        )

    async def account_auth(request: Request) -> Response:
        try:
            auth = parse_account_request(state, request.query_params)
        except PortalError as error:
            return _error(str(error))
        decision = await read_decision(request, "open_id", "emulator_open_id")
        if decision is None:
            return HTMLResponse(
                pages.account_consent(auth.app.app_id, auth.scope, list(state.accounts.values()))
            )
        if decision.choice == "deny":
            return _deny(state, auth.redirect_uri, auth.state)
        if decision.choice != "approve":
            return _error("The decision must be 'approve' or 'deny'.")
        open_id = decision.selected[0] if decision.selected else next(iter(state.accounts))
        if open_id not in state.accounts:
            return _error("Unknown TikTok account selected.")
        code = state.issue_account_code(auth.app, auth.redirect_uri, open_id, auth.scope)
        return redirect_with(
            auth.redirect_uri, {"code": code.value, "scopes": auth.scope, "state": auth.state}
        )

    methods = ["GET", "POST"]
    return [
        Route("/portal/auth", advertiser_auth, methods=methods),
        Route("/marketing_api/auth", advertiser_auth, methods=methods),
        Route("/v2/auth/authorize/", account_auth, methods=methods),
    ]
