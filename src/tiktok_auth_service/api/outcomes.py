"""How the callback gives the person's browser the outcome: a redirect back to `return_to`
with it in the query, a popup's page that posts it to the window that opened it, or a page
saying what was connected."""

from __future__ import annotations

import html
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tiktok_auth_service.api.problems import error_page, html_page
from tiktok_auth_service.api.security import NO_STORE, POPUP_PAGE_POLICY, POPUP_SCRIPT
from tiktok_auth_service.authorization import AuthorizationResult, origin_of

# The keys /callback appends to return_to; a caller-supplied copy is dropped first, so the
# outcome cannot be pre-seeded (most parsers take the first `status`).
OUTCOME_KEYS = frozenset({"status", "advertiser_ids", "open_id", "error", "session_id"})


def redirect_back(result: AuthorizationResult) -> Response:
    assert result.return_to is not None
    if result.error:
        outcome = {"status": "error", "error": result.error.code}
    elif result.open_id is not None:
        outcome = {"status": "connected", "open_id": result.open_id}
    else:
        outcome = {"status": "connected", "advertiser_ids": ",".join(result.advertiser_ids)}
    if result.session_id is not None:
        outcome["session_id"] = str(result.session_id)
    parts = urlsplit(result.return_to)
    kept = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in OUTCOME_KEYS
    ]
    query = urlencode([*kept, *outcome.items()])
    # No fragment: a page reading its outcome from location.hash could be handed one made up
    # by whoever chose return_to.
    back = urlunsplit(parts._replace(query=query, fragment=""))
    response = RedirectResponse(back, status_code=302)
    response.headers.update(NO_STORE)
    return response


def result_page(result: AuthorizationResult, more: str = "") -> HTMLResponse:
    """The page saying what was connected; `more` (already escaped) is added to its body."""
    if result.open_id is not None:
        return html_page(
            "TikTok account connected",
            f"<p>TikTok account <code>{html.escape(result.open_id)}</code> is now connected.</p>"
            f"<p>You can close this page.</p>{more}",
        )
    items = "".join(f"<li><code>{html.escape(a)}</code></li>" for a in result.advertiser_ids)
    return html_page(
        "Advertisers connected",
        f"<p>These advertisers are now connected:</p><ul>{items}</ul>"
        f"<p>You can close this page.</p>{more}",
    )


def popup_page(result: AuthorizationResult, return_to: str) -> Response:
    """The result page (or error page) of an authorization run in a popup, with the outcome
    for its script (security.POPUP_SCRIPT) to post to the opener on `return_to`'s origin
    (checked against RETURN_TO_ALLOWED_ORIGINS when the link was opened): what the redirect
    would have carried, and the tags, never a token, the state or TikTok's code. A window of
    another origin that opened the link receives nothing: the browser drops the message."""
    message: dict[str, object] = {"source": "tiktok-auth-service"}
    if result.error:
        message |= {"status": "error", "error": result.error.code}
    elif result.open_id is not None:
        message |= {"status": "connected", "open_id": result.open_id, "tags": result.tags}
    else:
        message |= {
            "status": "connected",
            "advertiser_ids": result.advertiser_ids,
            "tags": result.tags,
        }
    message["session_id"] = str(result.session_id) if result.session_id else None
    more = (
        f'<main id=tas-result data-message="{html.escape(orjson.dumps(message).decode())}" '
        f'data-origin="{html.escape(origin_of(return_to))}"></main>'
        f"<script>{POPUP_SCRIPT}</script>"
    )
    page = error_page(result.error, more) if result.error else result_page(result, more)
    page.headers["Content-Security-Policy"] = POPUP_PAGE_POLICY
    return page
