"""Request dependencies as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tiktok_auth_service.service import AuthService


def _service(request: Request) -> AuthService:
    service: AuthService = request.app.state.service
    return service


_bearer = HTTPBearer(auto_error=False, description="The caller's API key (`tas_...`).")


def _api_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    return credentials.credentials if credentials else None


ServiceDep = Annotated[AuthService, Depends(_service)]
ApiKeyDep = Annotated[str | None, Depends(_api_key)]
