"""What routes get from the app: the service and the caller's key. The token routes are the
hot path and call these directly: FastAPI's dependency resolution costs more than the rest of
the request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from tiktok_auth_service.service import Service

# Declared once in the OpenAPI document (see app.py) and referenced by every token route.
API_KEY_SECURITY: dict[str, Any] = {"security": [{"ApiKey": []}]}


def attach_service(app: FastAPI, service: Service) -> None:
    """Called by the lifespan once the service is open."""
    app.state.service = service


def app_service(app: FastAPI) -> Service:
    """The service the lifespan opened for `app` (Starlette's `app.state` is untyped)."""
    service = app.state.service
    assert isinstance(service, Service)
    return service


def service_of(request: Request) -> Service:
    return app_service(request.app)


def api_key_of(request: Request) -> str | None:
    """The key from `Authorization: Bearer <key>`, or None."""
    return api_key_from(request.headers.get("authorization"))


def api_key_from(authorization: str | bytes | None) -> str | None:
    """The key of an Authorization header's value (`Bearer <key>`), or None."""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("latin-1")
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


ServiceDep = Annotated[Service, Depends(service_of)]
