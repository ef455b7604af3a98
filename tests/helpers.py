"""Small helpers shared by the service tests."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import SecretStr

from tiktok_auth_service.models import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service


def envelope(
    data: dict[str, Any] | None = None, code: int = 0, message: str = "OK"
) -> dict[str, Any]:
    """A TikTok response body: always HTTP 200, success decided by `code`."""
    return {
        "code": code,
        "message": message,
        "request_id": "20261124120000" + secrets.token_hex(10).upper(),
        "data": data if data is not None else {},
    }


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def start_authorization(client: httpx.AsyncClient, **params: str) -> str:
    """GET /authorize and return the state TikTok would echo back."""
    response = await client.get("/authorize", params=params)
    assert response.status_code == 302, response.text
    return query_of(response.headers["location"])["state"]


def new_token() -> str:
    return secrets.token_hex(20)


async def store_advertiser_grant(
    service: Service,
    token: str,
    advertisers: list[str],
    status: GrantStatus = GrantStatus.ACTIVE,
) -> uuid.UUID:
    """An advertiser grant stored the way the service stores one: sealed, through the
    repository."""
    now = datetime.now(UTC)
    grant = Grant(
        id=uuid.uuid4(),
        flow=Flow.ADVERTISER,
        key_id="",
        access_token_enc=b"",
        scope=[4],
        status=GrantStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    service.sealer.seal(grant, SecretStr(token))
    async with service.db.session() as session, session.begin():
        repo = Repository(session)
        await repo.add_grant(grant)
        await repo.assign_advertisers(grant.id, advertisers, now)
        if status != GrantStatus.ACTIVE:
            await repo.set_grant_status(grant, status, now)
    return grant.id
