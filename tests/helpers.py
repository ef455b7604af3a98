"""Small helpers shared by the service tests."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


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
