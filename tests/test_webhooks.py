"""Signed webhooks (Standard Webhooks 1.0) from the outbox, to a real HTTP receiver: verified
with the reference library, retried after failures with the same webhook-id, in order."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
import respx
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fixtures import OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer, make_settings
from tests.helpers import (
    TikTokAccounts,
    connect_account,
    envelope,
    new_token,
    query_of,
    start_authorization,
    start_through,
)
from tiktok_auth_dev.stack import bind_socket, serving
from tiktok_auth_service.config import Settings
from tiktok_auth_service.service import Service

SECRET = "whsec_" + base64.b64encode(b"webhook-signing-key-0123456789").decode()
A, B, C = "7100000000000000001", "7100000000000000002", "7100000000000000003"


@dataclass
class Receiver:
    """A real HTTP server that answers each delivery with the next status in `answers`."""

    url: str
    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        status = self.answers.pop(0) if self.answers else 200
        self.received.append((dict(request.headers), await request.body(), status))
        return Response(status_code=status)

    def verified(self) -> list[dict[str, Any]]:
        """The bodies of the deliveries answered 2xx, each verified by the reference library."""
        webhook = Webhook(SECRET)
        return [
            webhook.verify(body, headers) for headers, body, status in self.received if status < 300
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    sock = bind_socket("127.0.0.1", 0)
    found = Receiver(f"http://127.0.0.1:{sock.getsockname()[1]}/hooks?token=receiver-secret")
    app = Starlette(routes=[Route("/hooks", found.endpoint, methods=["POST"])])
    async with serving(app, sock):
        yield found


@pytest.fixture
def settings(migrated: str, receiver: Receiver) -> Settings:
    return make_settings(migrated, webhook_url=receiver.url, webhook_secret=SECRET)


@pytest.fixture
def tiktok(canaries: Canaries) -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()  # the receiver is real
        token = new_token()
        canaries.add(token)
        mock.post("/oauth2/access_token/").respond(
            json=envelope({"access_token": token, "advertiser_ids": [A, B], "scope": [4]})
        )
        mock.get("/oauth2/advertiser/get/").respond(json=envelope({"list": []}))
        mock.post("/oauth2/revoke_token/").respond(json=envelope())
        yield mock


async def connect(client: httpx.AsyncClient) -> None:
    state = await start_authorization(client)
    assert (await client.get("/callback", params={"auth_code": "c", "state": state})).is_success


async def test_a_delivery_is_signed_and_verifies_with_the_reference_library(
    client: httpx.AsyncClient, tiktok: respx.MockRouter, service: Service, receiver: Receiver
) -> None:
    await connect(client)
    await service.worker.drain()
    [event] = receiver.verified()
    assert event["type"] == "connection.created"
    assert event["data"]["flow"] == "advertiser"
    assert event["data"]["advertiser_ids"] == [A, B]
    headers, body, _ = receiver.received[0]
    assert headers["webhook-id"].startswith("msg_")
    assert headers["webhook-signature"].startswith("v1,")
    assert "access_token" not in body.decode()


async def test_a_failed_delivery_is_retried_with_backoff_and_the_same_id(
    client: httpx.AsyncClient,
    tiktok: respx.MockRouter,
    service: Service,
    receiver: Receiver,
    clock: FakeClock,
    pg: asyncpg.Connection,
) -> None:
    receiver.answers = [500, 500]
    await connect(client)
    await service.worker.drain()
    assert [status for _, _, status in receiver.received] == [500]
    await service.worker.drain()  # backing off: not yet
    assert len(receiver.received) == 1
    clock.advance(seconds=5)  # WEBHOOK_RETRY_BASE_SECONDS
    await service.worker.drain()
    clock.advance(seconds=10)  # doubled
    await service.worker.drain()
    statuses = [status for _, _, status in receiver.received]
    assert statuses == [500, 500, 200]
    assert len({headers["webhook-id"] for headers, _, _ in receiver.received}) == 1
    assert [event["type"] for event in receiver.verified()] == ["connection.created"]
    row = await pg.fetchrow("SELECT status, attempts FROM webhook_delivery")
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    scraped = (await client.get("/metrics")).text
    assert 'tiktok_auth_webhook_deliveries_total{outcome="retrying"} 2.0' in scraped
    assert 'tiktok_auth_webhook_deliveries_total{outcome="delivered"} 1.0' in scraped


async def test_events_of_one_subject_arrive_in_order(
    client: httpx.AsyncClient,
    tiktok: respx.MockRouter,
    service: Service,
    receiver: Receiver,
    api_key: str,
    clock: FakeClock,
) -> None:
    receiver.answers = [503]  # the first event fails once: the second must wait for it
    await connect(client)
    assert (await client.delete(f"/tokens/{A}", headers=bearer(api_key))).is_success
    await service.worker.drain()
    assert len(receiver.received) == 1
    clock.advance(seconds=5)
    await service.worker.drain()
    assert [event["type"] for event in receiver.verified()] == [
        "connection.created",
        "connection.revoked",
    ]


async def test_a_delivery_is_given_up_after_a_day(
    client: httpx.AsyncClient,
    tiktok: respx.MockRouter,
    service: Service,
    receiver: Receiver,
    clock: FakeClock,
    pg: asyncpg.Connection,
) -> None:
    receiver.answers = [500] * 100
    await connect(client)
    for _ in range(40):
        await service.worker.drain()
        clock.advance(hours=1)
    row = await pg.fetchrow("SELECT status, last_error FROM webhook_delivery")
    assert (row["status"], row["last_error"]) == ("failed", "HTTP 500")
    assert len(receiver.received) < 40  # backed off, not retried every pass


def test_webhook_settings_are_checked() -> None:
    from tests.test_config import valid_settings
    from tiktok_auth_service.config import ConfigError

    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        valid_settings(webhook_url="https://hooks.example/in")
    with pytest.raises(ConfigError, match="whsec_"):
        valid_settings(webhook_url="https://hooks.example/in", webhook_secret="plain")
    assert valid_settings(
        webhook_url="https://a.example/x, https://b.example/y", webhook_secret=SECRET
    ).webhook_url == [
        "https://a.example/x",
        "https://b.example/y",
    ]


async def test_account_events_expiring_once_and_reauthorization_required(
    client: httpx.AsyncClient,
    service: Service,
    receiver: Receiver,
    canaries: Canaries,
    clock: FakeClock,
    api_key: str,
) -> None:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        accounts = TikTokAccounts(mock, canaries, clock)
        await connect_account(client)
        url = f"/tokens/accounts/{OPEN_ID}"
        clock.advance(days=352)  # 13 days before the refresh token ends: inside the window
        for _ in range(2):  # two refreshes inside the warning window: one announcement
            assert (await client.get(url, headers=bearer(api_key))).status_code == 200
            clock.advance(days=1)
        assert accounts.refresh.call_count == 2
        accounts.refresh_fails(40107)
        assert (await client.get(url, headers=bearer(api_key))).status_code == 409
        await service.worker.drain()
    types = [event["type"] for event in receiver.verified()]
    assert types == [
        "connection.created",
        "refresh_token.expiring",
        "connection.reauthorization_required",
    ]
    expiring = receiver.verified()[1]["data"]
    assert expiring["subject"] == OPEN_ID
    assert expiring["refresh_expires_at"].startswith("2027-11-24")


async def connect_as(
    client: httpx.AsyncClient, api_key: str, end_user: str, flow: str = "advertiser"
) -> None:
    """Connect through a link opened for `end_user`."""
    opened = await client.post(
        "/connect-sessions", json={"flow": flow, "end_user": end_user}, headers=bearer(api_key)
    )
    start = await start_through(client, opened.json()["url"])
    state = query_of(start.headers["location"])["state"]
    answer = await client.get("/callback", params={"auth_code": "c", "code": "c", "state": state})
    assert answer.is_success, answer.text


class TestTheLastToAuthorizeWins:
    """Connecting an advertiser or account another end_user had moves it to the newest grant;
    the event says who had it before."""

    async def test_advertisers_taken_from_another_end_user_name_them(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        receiver: Receiver,
        api_key: str,
        canaries: Canaries,
    ) -> None:
        await connect_as(client, api_key, "user-1")  # TikTok grants A and B
        token = new_token()
        canaries.add(token)
        tiktok.post("/oauth2/access_token/").respond(
            json=envelope({"access_token": token, "advertiser_ids": [B, C], "scope": [4]})
        )
        await connect_as(client, api_key, "user-2")
        await connect_as(client, api_key, "user-2")  # the same person again
        await service.worker.drain()
        created = [e["data"] for e in receiver.verified() if e["type"] == "connection.created"]
        assert len(created) == 3
        assert "previous_end_users" not in created[0]
        # B was user-1's; C was nobody's, so it is not listed.
        assert created[1]["end_user"] == "user-2"
        assert created[1]["previous_end_users"] == {B: "user-1"}
        assert "previous_end_users" not in created[2]
        served = await client.get(f"/tokens/{B}", headers=bearer(api_key))
        assert (served.json()["access_token"], served.json()["end_user"]) == (token, "user-2")

    async def test_an_account_taken_from_another_end_user_names_them(
        self,
        client: httpx.AsyncClient,
        service: Service,
        receiver: Receiver,
        canaries: Canaries,
        clock: FakeClock,
        api_key: str,
    ) -> None:
        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            mock.route(host="127.0.0.1").pass_through()
            TikTokAccounts(mock, canaries, clock)
            await connect_as(client, api_key, "user-1", flow="tiktok_account")
            await connect_as(client, api_key, "user-1", flow="tiktok_account")
            await connect_as(client, api_key, "user-2", flow="tiktok_account")
            await service.worker.drain()
        events = [(e["type"], e["data"]) for e in receiver.verified()]
        assert [kind for kind, _ in events] == [
            "connection.created",
            "connection.updated",
            "connection.updated",
        ]
        assert "previous_end_user" not in events[0][1]
        assert "previous_end_user" not in events[1][1]
        assert events[2][1]["end_user"] == "user-2"
        assert events[2][1]["previous_end_user"] == "user-1"
