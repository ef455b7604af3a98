"""Request dependencies. The token routes are the hot path and read these directly from the
request: FastAPI's dependency resolution costs more than the rest of the request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from tiktok_auth_service.service import AuthService

# Declared once in the OpenAPI document (see app.py) and referenced by every token route.
API_KEY_SECURITY: dict[str, Any] = {"security": [{"ApiKey": []}]}


def service_of(request: Request) -> AuthService:
    service: AuthService = request.app.state.service
    return service


def api_key_of(request: Request) -> str | None:
    """The key from `Authorization: Bearer <key>`, or None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


ServiceDep = Annotated[AuthService, Depends(service_of)]
