"""The hot path (`CachedTokenReads`): a read, from the token cache or with its one query on a
miss, is answered before the middleware stack and the route, and must look exactly like the
route's answer: the same body and headers, its request id, one metric and one audit record,
its access-log line. An error goes on to the route, still counted once."""

from __future__ import annotations

import logging
import re

import asyncpg
import httpx
import pytest

from tests.fixtures import Canaries, bearer
from tests.helpers import new_token, store_advertiser_grant, until
from tiktok_auth_service.api import tokens as token_routes
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.service import Service

ADVERTISER = "7100000000000000001"
ACCESS_LOG = "tiktok_auth_service.access"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
# What differs between two answers to the same read.
PER_ANSWER = {"date", "x-request-id"}
# An X-Request-ID the hot path leaves to its middleware: the read goes down the whole stack.
TO_THE_ROUTE = {"X-Request-ID": "x" * 129}


@pytest.fixture
async def token(service: Service, canaries: Canaries) -> str:
    """The token serving ADVERTISER, once the cache's notification connection is up."""
    token = new_token()
    canaries.add(token)
    await store_advertiser_grant(service, token, [ADVERTISER])

    async def live() -> bool:
        return service.tokens.cache.live

    await until(live, "the cache on", within=10)
    return token


async def read(client: httpx.AsyncClient, api_key: str, **headers: str) -> httpx.Response:
    return await client.get(f"/tokens/{ADVERTISER}", headers={**bearer(api_key), **headers})


async def fill(client: httpx.AsyncClient, service: Service, api_key: str) -> list[httpx.Response]:
    """Reads until one leaves the read in the cache (a read that a notification overtook,
    such as one of the grant just stored, is rightly not kept); returns their answers."""
    held = service.tokens.cache.lookup
    answers: list[httpx.Response] = []
    while held("advertiser", digest(api_key), ADVERTISER) is None:
        assert len(answers) < 20, "the cache never kept the read"
        answers.append(await read(client, api_key))
    return answers


def disable_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the route cannot read: a 200 came from the hot path."""

    def unreachable(*args: object) -> None:
        raise AssertionError("the route read a token the hot path answers")

    monkeypatch.setattr(token_routes, "service_of", unreachable)


@pytest.mark.parametrize("cached", [True, False], ids=["hit", "miss"])
async def test_the_hot_path_answers_exactly_as_the_route_does(
    cached: bool,
    client: httpx.AsyncClient,
    service: Service,
    api_key: str,
    token: str,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routed = await read(client, api_key, **TO_THE_ROUTE)
    answers = [routed, *await fill(client, service, api_key)]
    if not cached:  # as a change to the advertiser notifies it
        service.tokens.cache.notified(f"a:{ADVERTISER}")
        assert service.tokens.cache.lookup("advertiser", digest(api_key), ADVERTISER) is None
    disable_route(monkeypatch)
    fast = await read(client, api_key)
    answers.append(fast)

    assert (routed.status_code, fast.status_code) == (200, 200)
    assert fast.content == routed.content and fast.json()["access_token"] == token

    def fixed(response: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in response.headers.multi_items() if k not in PER_ANSWER)

    assert fixed(fast) == fixed(routed)
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(GENERATED_ID.fullmatch(each) for each in ids) and len(set(ids)) == len(ids)
    # Counted and audited once each, the audit with the id each answer carried.
    assert await service.audit.flush() == len(ids)
    rows = await pg.fetch("SELECT outcome, request_id FROM token_access ORDER BY id")
    assert [tuple(row) for row in rows] == [("served", each) for each in ids]
    assert service.metrics.token_reads.labels("advertiser", "served")._value.get() == len(ids)


async def test_a_hit_keeps_an_acceptable_request_id(
    client: httpx.AsyncClient,
    service: Service,
    api_key: str,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await fill(client, service, api_key)
    disable_route(monkeypatch)
    hit = await read(client, api_key, **{"X-Request-ID": "trace 42/abc"})
    assert hit.status_code == 200 and hit.headers["x-request-id"] == "trace 42/abc"


async def test_an_unacceptable_request_id_is_replaced_the_general_way(
    client: httpx.AsyncClient,
    service: Service,
    api_key: str,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fill(client, service, api_key)
    answer = await read(client, api_key, **TO_THE_ROUTE)
    assert answer.status_code == 200 and answer.json()["access_token"] == token
    replaced = answer.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(replaced)
    assert any(replaced in record.getMessage() for record in caplog.records)  # and says so


async def test_a_hit_is_observed_like_any_request(
    client: httpx.AsyncClient,
    service: Service,
    api_key: str,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    misses = await fill(client, service, api_key)
    disable_route(monkeypatch)
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOG)
    caplog.clear()
    hit = await read(client, api_key)
    assert hit.status_code == 200
    (line,) = [record for record in caplog.records if record.name == ACCESS_LOG]
    # A successful read's line is DEBUG: the audit already records each one.
    assert line.levelno == logging.DEBUG
    assert (line.route, line.status, line.api_key_name) == (  # type: ignore[attr-defined]
        "/tokens/{advertiser_id}",
        200,
        "reporting",
    )
    requests = service.metrics.http_requests.labels("GET", "/tokens/{advertiser_id}", "200")
    assert requests._value.get() == len(misses) + 1


async def test_a_failed_read_is_answered_by_the_route_and_counted_once(
    client: httpx.AsyncClient,
    service: Service,
    caplog: pytest.LogCaptureFixture,
    api_key: str,
    pg: asyncpg.Connection,
) -> None:
    caplog.set_level(logging.DEBUG, logger=ACCESS_LOG)
    answer = await read(client, api_key)
    assert answer.status_code == 404  # nothing connected
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "not_connected"
    (line,) = [record for record in caplog.records if record.name == ACCESS_LOG]
    assert line.levelno == logging.INFO
    assert await service.audit.flush() == 1
    assert await pg.fetchval("SELECT outcome FROM token_access") == "not_connected"
    counted = service.metrics.token_reads.labels("advertiser", "not_connected")._value.get()
    assert counted == 1
