"""Signed webhooks (Standard Webhooks 1.0) from the outbox, to a real HTTP receiver: verified
with the reference library, retried after failures with the same webhook-id, in order."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
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
    until,
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
    # These tests start authorizations at /authorize directly: no connect session required.
    return make_settings(
        migrated,
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        connect_sessions_required=False,
    )


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
    await service.webhooks.drain()
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
    await service.webhooks.drain()
    assert [status for _, _, status in receiver.received] == [500]
    await service.webhooks.drain()  # backing off: not yet
    assert len(receiver.received) == 1
    clock.advance(seconds=5)  # WEBHOOK_RETRY_BASE_SECONDS
    await service.webhooks.drain()
    clock.advance(seconds=10)  # doubled
    await service.webhooks.drain()
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
    await service.webhooks.drain()
    assert len(receiver.received) == 1
    clock.advance(seconds=5)
    await service.webhooks.drain()
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
        await service.webhooks.drain()
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
        await service.webhooks.drain()
    types = [event["type"] for event in receiver.verified()]
    assert types == [
        "connection.created",
        "refresh_token.expiring",
        "connection.reauthorization_required",
    ]
    expiring = receiver.verified()[1]["data"]
    assert expiring["subject"] == OPEN_ID
    assert expiring["refresh_expires_at"].startswith("2027-11-24")


@dataclass
class DrippingReceiver:
    """A hostile receiver: it reads the request, then answers one byte every DRIP_SECONDS
    forever, so the head of its answer (and its status) never completes."""

    url: str
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        self.requested.set()
        dripping = asyncio.create_task(self._drip(writer))
        try:
            while await reader.read(4096):  # the body, then end of file when the sender gives up
                pass
        finally:
            dripping.cancel()
            self.hung_up.set()

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while True:
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(DRIP_SECONDS)  # the receiver's pace, not a synchronisation


DRIP_SECONDS = 0.5


@pytest.fixture
def drip_socket() -> Iterator[socket.socket]:
    sock = bind_socket("127.0.0.1", 0)
    with sock:
        yield sock


@pytest.fixture
async def drip(drip_socket: socket.socket) -> AsyncIterator[DrippingReceiver]:
    """Requested after the app, so torn down before it: the receiver hangs up first."""
    found = DrippingReceiver(f"http://127.0.0.1:{drip_socket.getsockname()[1]}/hooks")
    server = await asyncio.start_server(found.handle, sock=drip_socket)
    try:
        yield found
    finally:
        server.close()
        for writer in found.writers:
            writer.close()


def dripping_settings(migrated: str, drip_socket: socket.socket, **overrides: Any) -> Settings:
    return make_settings(
        migrated,
        webhook_url=f"http://127.0.0.1:{drip_socket.getsockname()[1]}/hooks",
        webhook_secret=SECRET,
        webhook_timeout_seconds=WEBHOOK_DEADLINE,
        connect_sessions_required=False,
        **overrides,
    )


class TestAHangingReceiver:
    @pytest.fixture
    def settings(self, migrated: str, drip_socket: socket.socket) -> Settings:
        # The worker and the sender run in the app's lifespan, as in `serve`.
        return dripping_settings(
            migrated, drip_socket, worker_enabled=True, worker_poll_seconds=0.05
        )

    async def test_delays_no_refresh_and_is_given_up_at_its_deadline(
        self,
        client: httpx.AsyncClient,
        service: Service,
        canaries: Canaries,
        clock: FakeClock,
        pg: asyncpg.Connection,
        drip: DrippingReceiver,
    ) -> None:
        async def refreshed() -> bool:
            expires_at = await pg.fetchval("SELECT expires_at FROM oauth_grant")
            return bool(expires_at > clock.now() + timedelta(hours=23))

        async def attempted() -> bool:
            return bool(await pg.fetchval("SELECT attempts FROM webhook_delivery"))

        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            mock.route(host="127.0.0.1").pass_through()  # the receiver is real
            accounts = TikTokAccounts(mock, canaries, clock)
            await connect_account(client)  # connection.created, to the dripping receiver
            await asyncio.wait_for(drip.requested.wait(), timeout=10)
            clock.advance(hours=23, minutes=50)  # the account token is due for refresh
            await until(refreshed, "the account token refreshed by the worker", within=10)
            assert accounts.refresh.call_count == 1
            assert not drip.hung_up.is_set()  # the delivery still hangs meanwhile
            await asyncio.wait_for(drip.hung_up.wait(), timeout=10 * WEBHOOK_DEADLINE)
            await until(attempted, "the timed-out attempt recorded", within=10)
        row = await pg.fetchrow(
            "SELECT status, attempts, last_error, next_attempt_at FROM webhook_delivery"
        )
        assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "timeout")
        assert row["next_attempt_at"] == clock.now() + timedelta(seconds=5)  # backing off
        scraped = (await client.get("/metrics")).text
        assert 'tiktok_auth_webhook_deliveries_total{outcome="retrying"} 1.0' in scraped


WEBHOOK_DEADLINE = 2.0


class TestStopping:
    @pytest.fixture
    def settings(self, migrated: str, drip_socket: socket.socket) -> Settings:
        return dripping_settings(migrated, drip_socket)

    async def test_a_stop_ends_the_sender_after_the_attempt_under_way(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        pg: asyncpg.Connection,
        drip: DrippingReceiver,
    ) -> None:
        await connect(client)
        stop = asyncio.Event()
        sender = asyncio.create_task(service.webhooks.run(stop))
        await asyncio.wait_for(drip.requested.wait(), timeout=10)
        stop.set()
        await asyncio.wait_for(sender, timeout=10 * WEBHOOK_DEADLINE)
        assert drip.hung_up.is_set()
        row = await pg.fetchrow("SELECT attempts, last_error, lease_until FROM webhook_delivery")
        assert tuple(row) == (1, "timeout", None)


@dataclass
class HoldingReceiver:
    """Holds every delivery until `release`; records each event's subject and number in order
    of arrival, and the most it held at once."""

    url: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: list[tuple[str, int]] = field(default_factory=list)
    held: int = 0
    most_held: int = 0

    async def endpoint(self, request: Request) -> Response:
        data = orjson.loads(await request.body())["data"]
        self.arrived.append((data["subject"], data["n"]))
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        try:
            await self.release.wait()
        finally:
            self.held -= 1
        return Response(status_code=204)


class TestConcurrency:
    @pytest.fixture
    async def holding(self) -> AsyncIterator[HoldingReceiver]:
        sock = bind_socket("127.0.0.1", 0)
        found = HoldingReceiver(f"http://127.0.0.1:{sock.getsockname()[1]}/hooks")
        app = Starlette(routes=[Route("/hooks", found.endpoint, methods=["POST"])])
        async with serving(app, sock):
            yield found

    @pytest.fixture
    def settings(self, migrated: str, holding: HoldingReceiver) -> Settings:
        return make_settings(
            migrated, webhook_url=holding.url, webhook_secret=SECRET, webhook_concurrency=3
        )

    async def test_deliveries_go_out_concurrently_up_to_the_limit_in_order_per_subject(
        self,
        service: Service,
        holding: HoldingReceiver,
        clock: FakeClock,
        pg: asyncpg.Connection,
    ) -> None:
        for n, subject in enumerate(["a", "a", "b", "c", "d"]):
            body = {"type": "connection.updated", "data": {"subject": subject, "n": n}}
            await pg.execute(
                "INSERT INTO webhook_delivery (event_id, url, subject, event_type, payload,"
                " status, attempts, created_at, next_attempt_at)"
                " VALUES ($1, $2, $3, 'connection.updated', $4, 'pending', 0, $5, $5)",
                f"msg_{n}",
                holding.url,
                subject,
                orjson.dumps(body).decode(),
                clock.now(),
            )
        drain = asyncio.create_task(service.webhooks.drain())

        async def held(count: int) -> bool:
            return holding.held == count

        await until(lambda: held(3), "three deliveries under way at once", within=10)
        leased = await pg.fetch(
            "SELECT subject FROM webhook_delivery WHERE lease_until IS NOT NULL ORDER BY seq"
        )
        assert [row["subject"] for row in leased] == ["a", "b", "c"]  # a's second event waits
        holding.release.set()
        assert await asyncio.wait_for(drain, timeout=10) == 5
        assert holding.most_held == 3
        assert sorted(holding.arrived) == [("a", 0), ("a", 1), ("b", 2), ("c", 3), ("d", 4)]
        assert [n for subject, n in holding.arrived if subject == "a"] == [0, 1]
        statuses = await pg.fetch("SELECT DISTINCT status FROM webhook_delivery")
        assert [row["status"] for row in statuses] == ["delivered"]


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
        await service.webhooks.drain()
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
            await service.webhooks.drain()
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


class TestAdvertiserListSync:
    """A check that finds TikTok listing other advertisers than the grant serves announces
    the difference once, as connection.updated."""

    async def test_an_advertiser_gone_at_tiktok_is_announced_as_removed(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        receiver: Receiver,
        api_key: str,
    ) -> None:
        await connect(client)
        tiktok.get("/oauth2/advertiser/get/").respond(
            json=envelope({"list": [{"advertiser_id": B, "advertiser_name": "B"}]})
        )
        assert (await client.post(f"/tokens/{B}/check", headers=bearer(api_key))).is_success
        assert (await client.post(f"/tokens/{B}/check", headers=bearer(api_key))).is_success
        await service.webhooks.drain()
        events = [(e["type"], e["data"]) for e in receiver.verified()]
        assert [kind for kind, _ in events] == ["connection.created", "connection.updated"]
        assert events[1][1]["removed_advertiser_ids"] == [A]
        assert events[1][1]["added_advertiser_ids"] == []

    async def test_an_advertiser_new_at_tiktok_is_announced_as_added(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        receiver: Receiver,
        api_key: str,
    ) -> None:
        await connect(client)
        listed = [A, B, C]
        tiktok.get("/oauth2/advertiser/get/").respond(
            json=envelope({"list": [{"advertiser_id": a, "advertiser_name": a} for a in listed]})
        )
        assert (await client.post(f"/tokens/{A}/check", headers=bearer(api_key))).is_success
        await service.webhooks.drain()
        events = [(e["type"], e["data"]) for e in receiver.verified()]
        assert [kind for kind, _ in events] == ["connection.created", "connection.updated"]
        assert events[1][1]["added_advertiser_ids"] == [C]
        assert events[1][1]["removed_advertiser_ids"] == []
        assert (await client.get(f"/tokens/{C}", headers=bearer(api_key))).status_code == 200


class TestTagsAndRecovery:
    async def test_every_event_carries_the_connections_tags(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        receiver: Receiver,
        api_key: str,
    ) -> None:
        tags = {"tenant": "acme", "plan": "pro"}
        opened = await client.post(
            "/connect-sessions", json={"tags": tags}, headers=bearer(api_key)
        )
        start = await start_through(client, opened.json()["url"])
        state = query_of(start.headers["location"])["state"]
        assert (await client.get("/callback", params={"auth_code": "c", "state": state})).is_success
        tiktok.get("/oauth2/advertiser/get/").respond(
            json=envelope({"list": [{"advertiser_id": B, "advertiser_name": "B"}]})
        )
        assert (await client.post(f"/tokens/{B}/check", headers=bearer(api_key))).is_success
        tiktok.get("/oauth2/advertiser/get/").respond(json=envelope(code=40105, message="x"))
        assert (await client.post(f"/tokens/{B}/check", headers=bearer(api_key))).status_code == 409
        await service.webhooks.drain()
        events = [(e["type"], e["data"]["tags"]) for e in receiver.verified()]
        assert events == [
            ("connection.created", tags),
            ("connection.updated", tags),
            ("connection.reauthorization_required", tags),
        ]

    async def test_a_refresh_that_succeeds_after_failing_is_announced_recovered(
        self,
        client: httpx.AsyncClient,
        service: Service,
        receiver: Receiver,
        canaries: Canaries,
        clock: FakeClock,
    ) -> None:
        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            mock.route(host="127.0.0.1").pass_through()
            accounts = TikTokAccounts(mock, canaries, clock)
            await connect_account(client)
            clock.advance(hours=23, minutes=50)
            assert await service.worker.drain() == 1  # a success after no failure: no event
            accounts.refresh_fails(50002)
            clock.advance(hours=23, minutes=50)
            for _ in range(2):
                assert await service.worker.drain() == 1
                clock.advance(seconds=61)
            accounts.refresh.mock(side_effect=accounts.issue)
            assert await service.worker.drain() == 1
            clock.advance(hours=23, minutes=50)
            assert await service.worker.drain() == 1  # healthy again: no second event
            await service.webhooks.drain()
        events = [(e["type"], e["data"]) for e in receiver.verified()]
        assert [kind for kind, _ in events] == [
            "connection.created",
            "refresh.failed",
            "refresh.failed",
            "connection.recovered",
        ]
        recovered = events[-1][1]
        assert (recovered["subject"], recovered["status"]) == (OPEN_ID, "active")
        assert recovered["failures"] == 2
        assert recovered["tags"] == {}

    async def test_a_liveness_check_that_succeeds_after_failing_is_announced_recovered(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        receiver: Receiver,
        api_key: str,
    ) -> None:
        await connect(client)
        advertisers = tiktok.get("/oauth2/advertiser/get/")
        advertisers.respond(json=envelope(code=50000, message="Internal error."))
        assert (await client.post(f"/tokens/{A}/check", headers=bearer(api_key))).status_code == 503
        listed = [{"advertiser_id": a, "advertiser_name": a} for a in (A, B)]
        advertisers.respond(json=envelope({"list": listed}))
        for _ in range(2):
            assert (await client.post(f"/tokens/{A}/check", headers=bearer(api_key))).is_success
        await service.webhooks.drain()
        events = [(e["type"], e["data"]) for e in receiver.verified()]
        assert [kind for kind, _ in events] == ["connection.created", "connection.recovered"]
        assert events[1][1]["advertiser_ids"] == [A, B]
        assert events[1][1]["failures"] == 1
