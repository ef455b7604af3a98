"""Which TikTok endpoint a gateway path names, or why it names none that may be forwarded.

The path is judged as the caller sent it (the raw request target), before anything decodes
or normalises it: what reaches TikTok is PREFIX's rest, appended to TIKTOK_API_BASE_URL, and
that rest may hold only the characters of TikTok's own paths. Dot segments, percent-encoded
characters (`%2e`, `%2f`), empty segments (`//host`) and absolute URLs never get that far.
"""

from __future__ import annotations

import re

from tiktok_auth_service import errors

PREFIX = b"/proxy/open_api/v1.3/"
# TikTok's paths: lower-case words joined by `/`, with the trailing slash v1.3 wants.
_ENDPOINT = re.compile(rb"(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-]+/?")
# The OAuth endpoints (`oauth2/...`, `tt_user/oauth2/...`) carry the app secret: never lent.
_OAUTH = re.compile(r"(?:^|/)oauth2(?:/|$)")


def endpoint_of(raw_path: bytes) -> str:
    """The endpoint below /open_api/v1.3/ (`campaign/get/`). Raises PathNotAllowed
    for anything that could leave it, EndpointRefused for OAuth endpoints."""
    if not raw_path.startswith(PREFIX):
        raise errors.PathNotAllowed("Gateway paths begin with /proxy/open_api/v1.3/.")
    rest = raw_path[len(PREFIX) :]
    if not _ENDPOINT.fullmatch(rest):
        raise errors.PathNotAllowed(
            "The path below /proxy/open_api/v1.3/ may hold only letters, digits, '_', '-' and "
            "single '/' between them (no dot segments, encoded characters or empty segments)."
        )
    endpoint = rest.decode("ascii")
    if _OAUTH.search(endpoint):
        raise errors.EndpointRefused(
            "TikTok's OAuth endpoints need the app secret, which the gateway never lends."
        )
    return endpoint
