"""The security headers of every response, in one place.

Every answer forbids framing (`frame-ancestors 'none'`, and X-Frame-Options for old browsers),
MIME sniffing, and sending a Referer: the browser leg's URLs carry a connect session, TikTok's
state and code, and the Referer of a page would hand them to whatever it loads or links.

The service's own pages (results and errors for browsers) load nothing: their Content Security
Policy allows only the one inline stylesheet below, by its hash, and the popup result page its
one inline script, by its hash too (`POPUP_PAGE_POLICY`), never `unsafe-inline`. The one page
with a form (/authorize's "Continue to TikTok") sets its own policy, `form_page_policy`, which
lets that form post to the service and be redirected to TikTok's consent page, nowhere else; a
response that sets its own policy keeps it. The interactive docs (Swagger UI, ReDoc, served
from the package by FastAPIOffline) run their own inline script and styles and fetch
/openapi.json, so their paths get a policy that allows that, from this origin only.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The only style the service's pages use (see problems.html_page); allowed by hash.
PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
    "padding:0 1rem;line-height:1.5}code{background:#eee;padding:0 .2rem}"
)
# Answers that carry a token, a link, a session or a problem: no cache may keep a copy.
NO_STORE = {"Cache-Control": "no-store"}

# The only script: the popup result page's (see outcomes.py), which hands the outcome written
# in its `#tas-result` element to the window that opened it, addressed to one origin, then
# closes; with no opener, the page stays as the plain result page. Allowed by hash.
POPUP_SCRIPT = (
    "{const r=document.getElementById('tas-result');if(window.opener){"
    "window.opener.postMessage(JSON.parse(r.dataset.message),r.dataset.origin);"
    "window.close()}}"
)


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


_PAGE_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_sha256(PAGE_STYLE)}'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action {form_action}"
)
PAGE_POLICY = _PAGE_POLICY.format(form_action="'none'")
POPUP_PAGE_POLICY = f"{PAGE_POLICY}; script-src 'sha256-{_sha256(POPUP_SCRIPT)}'"


def form_page_policy(*origins: str) -> str:
    """The policy of a page whose form posts to, and is redirected to, these origins only
    (browsers check a form's redirects against form-action too)."""
    return _PAGE_POLICY.format(form_action=" ".join(origins))


DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# FastAPIOffline's pages and the files they load.
DOCS_PAGES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
DOCS_FILES = "/static-offline-docs/"

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, **_COMMON}
DOCS_HEADERS = {"Content-Security-Policy": DOCS_POLICY, **_COMMON}


def _is_docs(path: str) -> bool:
    return path in DOCS_PAGES or path.startswith(DOCS_FILES)


def headers_for(path: str) -> dict[str, str]:
    """The security headers of a response to `path`."""
    return DOCS_HEADERS if _is_docs(path) else PAGE_HEADERS


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


# As ASGI header lines; RAW_PAGE_HEADERS also for the hot path, which answers before this
# middleware.
RAW_PAGE_HEADERS, _RAW_DOCS, _RAW_COMMON = _raw(PAGE_HEADERS), _raw(DOCS_HEADERS), _raw(_COMMON)
_CSP = b"content-security-policy"


class SecurityHeaders:
    """Pure ASGI middleware adding `headers_for(path)` to every HTTP response: precomputed
    header lines appended to the response start, so the token read pays a path check and a
    list copy (no body buffering, no task).
    Errors answered outside the middleware stack add them themselves (problems.install)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _RAW_DOCS if _is_docs(scope["path"]) else RAW_PAGE_HEADERS

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                own_policy = any(name == _CSP for name, _ in headers)
                message["headers"] = [*headers, *(_RAW_COMMON if own_policy else extra)]
            await send(message)

        await self.app(scope, receive, add_headers)
