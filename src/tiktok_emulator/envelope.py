"""TikTok's response envelope, its error codes, and the gateway's plain-text 404."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import PlainTextResponse, Response

MESSAGES: dict[int, str] = {
    0: "OK",
    40000: "Invalid parameters.",
    40001: "No permission to operate this advertiser.",
    40002: "Parameter error.",
    40014: "This endpoint is not supported in the sandbox environment.",
    40100: "Too many requests. Please retry in some time.",
    40101: "Invalid auth parameters.",
    40102: "Access token has expired.",
    40103: "Refresh token has expired.",
    40104: "Access token is empty. Put the access token in the Access-Token header.",
    40105: "Access token is invalid or has been revoked.",
    40106: "The access token is not authorized for this advertiser.",
    40107: "Refresh token is invalid.",
    40108: "Unsupported grant_type.",
    40110: "Authorization code is invalid.",
    40113: "App is blocked or does not match the token.",
    40115: "Authorization code is expired.",
    40133: "Too many requests for this advertiser. Please retry in some time.",
    50000: "System error.",
    50002: "Error processing the request.",
    51001: "Internal service timeout.",
    60001: "System under maintenance.",
}


class ApiError(Exception):
    """A non-zero envelope `code` (and its message), raised anywhere in the emulated API logic."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = code
        self.message = message_for(code) if detail is None else f"{message_for(code)} {detail}"
        super().__init__(self.message)


def message_for(code: int) -> str:
    """TikTok's message text for `code` (a generic text for codes it does not know)."""
    return MESSAGES.get(code, "Error.")


def new_request_id(timestamp: float) -> str:
    """A request id like TikTok's: `YYYYMMDDhhmmss` (UTC) and 20 uppercase hex characters."""
    stamp = datetime.fromtimestamp(timestamp, UTC).strftime("%Y%m%d%H%M%S")
    return stamp + secrets.token_hex(10).upper()


def envelope(code: int, message: str, data: dict[str, Any], request_id: str) -> Response:
    """The JSON envelope; always HTTP 200 because TikTok reports errors only in `code`."""
    body = {"code": code, "message": message, "request_id": request_id, "data": data}
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"X-TT-LOGID": request_id},
    )


def not_found() -> Response:
    """The gateway's answer for unknown paths, including a missing trailing slash."""
    return PlainTextResponse("404 page not found", status_code=404)
