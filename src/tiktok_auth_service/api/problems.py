"""The one place where service errors become HTTP responses: problem+json (RFC 9457) for API
callers, a readable page for browsers."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.observability import REQUEST_ID_HEADER, current_request_id
from tiktok_auth_service.api.security import NO_STORE, PAGE_STYLE, headers_for
from tiktok_auth_service.db import CONNECTION_ERRORS, DATABASE_ERRORS, lost_connection

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:tiktok-auth-service:problem:"


class Problem(BaseModel):
    """An error (RFC 9457). `code` is stable and meant for machines; the rest is for people."""

    type: str
    title: str
    status: int
    code: str
    detail: str


PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
_HTML = {"text/html": {"schema": {"type": "string"}}}


def problem_responses(
    *errors_: type[errors.ServiceError], html: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the errors a route can answer with, declared with the
    media type actually sent: `application/problem+json` (and, on the browser routes, the
    `text/html` page a browser gets instead)."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors_:
        content: dict[str, Any] = {"application/problem+json": {"schema": PROBLEM_SCHEMA}}
        if html:
            content.update(_HTML)
        entry = out.setdefault(error.status, {"content": content, "description": ""})
        entry["description"] = " / ".join(
            filter(None, [str(entry["description"]), f"`{error.code}`: {error.title}"])
        )
        if error.www_authenticate:
            entry.setdefault("headers", {})["WWW-Authenticate"] = {
                "description": f"`{error.www_authenticate}`",
                "schema": {"type": "string"},
            }
        if error.retry_after_always:
            entry.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before asking again.",
                "schema": {"type": "integer", "minimum": 1},
            }
    return out


def problem(
    status: int, code: str, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers={**NO_STORE, **(headers or {})},
    )


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept


def html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small self-contained page; every dynamic value must already be escaped."""
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers=NO_STORE,
    )


def _error_headers(error: errors.ServiceError) -> dict[str, str]:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    if error.www_authenticate:
        headers["WWW-Authenticate"] = error.www_authenticate
    return headers


def error_page(error: errors.ServiceError, more: str = "") -> HTMLResponse:
    """The page a browser gets for `error`; `more` (already escaped) is added to its body."""
    page = html_page(
        error.title,
        f"<p>{html.escape(error.detail)}</p><p>Error code: <code>{error.code}</code></p>{more}",
        error.status,
    )
    page.headers.update(_error_headers(error))
    return page


def error_response(request: Request, error: errors.ServiceError) -> Response:
    if wants_html(request):
        return error_page(error)
    return problem(error.status, error.code, error.title, error.detail, _error_headers(error))


def _allowed_methods(request: Request) -> list[str]:
    """The methods the API documents for this path (from the app's OpenAPI paths, the one
    public list of every route and its methods)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(method.upper() for method in operations)
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers; nothing foreseeable ever falls through to a bare 500."""

    async def on_service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ServiceError)
        if exc.status >= 500:
            log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.detail)
        return error_response(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        failed = errors.ValidationFailed
        return problem(failed.status, failed.code, failed.title, details)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route on this path; a path can have several
            # (GET and DELETE /tokens/{advertiser_id}), so Allow lists all of them.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), headers)

    async def on_database_down(request: Request, exc: Exception) -> Response:
        log.error(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return error_response(request, errors.DatabaseUnavailable())

    async def on_error(request: Request, exc: Exception) -> Response:
        """A lost database is a 503; anything else a 500, logged with its traceback."""
        if lost_connection(exc):
            return await on_database_down(request, exc)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(request, errors.ServiceError("An unexpected error occurred."))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette answers these from its outermost middleware, outside the ones that add
        # X-Request-ID and the security headers to responses, so they are added here.
        response = await on_error(request, exc)
        response.headers.update(headers_for(request.url.path))
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    app.add_exception_handler(errors.ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    for connection_error in CONNECTION_ERRORS:
        app.add_exception_handler(connection_error, on_database_down)
    # Answered here rather than by the catch-all below, which Starlette answers from outside
    # every middleware and then re-raises: the access log and the metrics would record a 500
    # and the server would log a traceback for a database that merely went away.
    for database_error in DATABASE_ERRORS:
        app.add_exception_handler(database_error, on_error)
    app.add_exception_handler(Exception, on_unexpected)
