"""The frontend connect kit: /connect.js, a dependency-free ES module whose `connect(url)` opens a
connect link in a popup, and /connect.d.ts, its types. Static files of the package, served as
they are: cacheable (an ETag to revalidate with), and readable from any origin, because a page
imports a module script with CORS."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter(tags=["frontend"])

CACHE_CONTROL = "public, max-age=3600"


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: str


@cache
def _asset(name: str) -> Asset:
    body = (files("tiktok_auth_service.api") / "static" / name).read_bytes()
    return Asset(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _answer(request: Request, name: str, media_type: str) -> Response:
    asset = _asset(name)
    headers = {
        "ETag": asset.etag,
        "Cache-Control": CACHE_CONTROL,
        "Access-Control-Allow-Origin": "*",
    }
    wanted = request.headers.get("if-none-match", "")
    if wanted.strip() == "*" or asset.etag in (
        tag.strip().removeprefix("W/") for tag in wanted.split(",")
    ):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=media_type, headers=headers)


def _responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": {media_type: {"schema": {"type": "string"}}}, "description": "The file."},
        304: {"description": "Not modified: the copy whose ETag was sent in If-None-Match."},
    }


@router.get(
    "/connect.js",
    summary="The connect kit: connect(url) opens a connect link in a popup",
    response_class=Response,
    responses=_responses("text/javascript"),
)
async def connect_js(request: Request) -> Response:
    """An ES module (no dependencies) exporting `connect(url)`, which opens a connect link in
    a popup (with `display=popup`) and returns a Promise of the result the popup reports:
    `{status: "connected", session_id, advertiser_ids | open_id, tags}`, or a `ConnectError`
    whose `code` is `popup_blocked`, `window_closed` or the session's error code. The result
    is a hint: confirm it with GET /connect-sessions/{session_id} from your server."""
    return _answer(request, "connect.js", "text/javascript; charset=utf-8")


@router.get(
    "/connect.d.ts",
    summary="The TypeScript types of /connect.js",
    response_class=Response,
    responses=_responses("application/typescript"),
)
async def connect_types(request: Request) -> Response:
    """The TypeScript declarations of /connect.js."""
    return _answer(request, "connect.d.ts", "application/typescript; charset=utf-8")
