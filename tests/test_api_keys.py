"""Every operation that takes an API key, read from the OpenAPI document (so a new one is
covered as soon as it exists): a missing, malformed, unknown or revoked key is 401 with
`WWW-Authenticate: Bearer`, and a key restricted to other subjects is 403."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures import OPEN_ID, Canaries, bearer
from tests.helpers import new_token, store_account_grant, store_advertiser_grant
from tiktok_auth_service.service import Service

A = "7100000000000000001"
SESSION_ID = str(uuid.uuid4())
PATH_VALUES = {"advertiser_id": A, "open_id": OPEN_ID, "session_id": SESSION_ID}


def keyed_operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with its parameters filled) of every operation that needs a key."""
    found = []
    for template, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if {"ApiKey": []} in operation.get("security", []):
                found.append((method.upper(), template.format(**PATH_VALUES)))
    return found


async def call(
    client: httpx.AsyncClient, method: str, path: str, headers: Mapping[str, str | bytes]
) -> httpx.Response:
    """The operation with these headers (a bytes value is sent as it is)."""
    body: dict[str, Any] | None = {"flow": "tiktok_account"} if method == "POST" else None
    raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
    return await client.request(method, path, json=body, headers=raw)


def test_the_keyed_operations_are_the_ones_we_expect(app: FastAPI) -> None:
    assert sorted(keyed_operations(app)) == sorted(
        [
            ("DELETE", f"/tokens/accounts/{OPEN_ID}"),
            ("DELETE", f"/tokens/{A}"),
            ("GET", "/connections"),
            ("GET", f"/connect-sessions/{SESSION_ID}"),
            ("GET", f"/tokens/accounts/{OPEN_ID}"),
            ("GET", f"/tokens/{A}"),
            ("POST", "/connect-sessions"),
            ("POST", f"/tokens/{A}/check"),
        ]
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Bearer    "},
        {"authorization": "Basic Zm9vOmJhcg=="},
        {"authorization": "tas_" + "k" * 43},  # no scheme
        {"authorization": "Bearer tas_" + "k" * 43},  # never issued
        {"authorization": "Bearer " + "k" * 8_000},
        {"authorization": "Bearer tas_' OR '1'='1"},
        {"authorization": "Bearer tas_zoë🎉".encode()},
        {"x-api-key": "tas_" + "k" * 43},  # not where keys go
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "basic",
        "no-scheme",
        "unknown",
        "oversized",
        "sql",
        "non-ascii",
        "other-header",
    ],
)
async def test_without_a_valid_key_every_operation_is_401(
    client: httpx.AsyncClient,
    app: FastAPI,
    pg: asyncpg.Connection,
    headers: dict[str, str | bytes],
) -> None:
    for method, path in keyed_operations(app):
        answer = await call(client, method, path, headers)
        assert (answer.status_code, answer.json()["code"]) == (401, "unauthenticated"), path
        assert answer.headers["www-authenticate"] == "Bearer"
    assert await pg.fetchval("SELECT count(*) FROM connect_session") == 0


async def test_a_revoked_key_opens_nothing_anywhere(
    client: httpx.AsyncClient,
    app: FastAPI,
    service: Service,
    api_key: str,
    canaries: Canaries,
) -> None:
    token = new_token()
    canaries.add(token)
    await store_advertiser_grant(service, token, [A])
    assert (await client.get(f"/tokens/{A}", headers=bearer(api_key))).status_code == 200
    assert await service.api_keys.revoke("reporting")
    for method, path in keyed_operations(app):
        answer = await call(client, method, path, bearer(api_key))
        assert answer.status_code == 401, path


async def test_a_key_for_other_subjects_is_403_on_every_subject(
    client: httpx.AsyncClient, app: FastAPI, service: Service, canaries: Canaries
) -> None:
    token = new_token()
    canaries.add(token)
    await store_advertiser_grant(service, token, [A])
    await store_account_grant(service, OPEN_ID, datetime.now(UTC) + timedelta(hours=20))
    key = (await service.api_keys.create("elsewhere", ["1"], ["other-open-id"])).key
    canaries.add(key.get_secret_value())
    subject_routes = [(m, p) for m, p in keyed_operations(app) if p.startswith("/tokens/")]
    for method, path in subject_routes:
        answer = await call(client, method, path, bearer(key.get_secret_value()))
        assert (answer.status_code, answer.json()["code"]) == (403, "forbidden"), path
    # And a key for advertisers only may not open a link for TikTok accounts.
    ads_only = (await service.api_keys.create("ads-only", [A])).key.get_secret_value()
    canaries.add(ads_only)
    answer = await call(client, "POST", "/connect-sessions", bearer(ads_only))
    assert answer.status_code == 403
