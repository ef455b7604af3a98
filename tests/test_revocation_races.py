"""Revocation against a TikTok that keeps score of live refresh chains: a revoke that has to
refresh first and then fails must not lose the rotated chain, whether DELETE or the worker
(for a replaced grant) was revoking. Also the store and sync races a review found."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import TikTokAccounts, connect_account, envelope, new_token, start_authorization
from tiktok_auth_service.models.grants import AdvertiserStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)


class ScoringTikTok(TikTokAccounts):
    """tt_user endpoints that remember which chains live: refresh rotates, revoke ends a chain
    (40102 for an expired access token), and `failing_revokes` answers 50000 first."""

    def __init__(self, mock: respx.MockRouter, canaries: Canaries, clock: FakeClock) -> None:
        super().__init__(mock, canaries, clock)
        self.live: dict[str, str] = {}  # access token -> its chain's refresh token
        self.expiry: dict[str, float] = {}
        self.failing_revokes = 0
        self.exchange.mock(side_effect=self._grant)
        self.refresh.mock(side_effect=self._refresh)
        self.revoke.mock(side_effect=self._revoke)

    def _grant(self, request: httpx.Request) -> httpx.Response:
        response = self.issue(request)
        self._remember()
        return response

    def _remember(self) -> None:
        self.live[self.access_tokens[-1]] = self.refresh_tokens[-1]
        self.expiry[self.access_tokens[-1]] = self.clock.now().timestamp() + 86400

    def _refresh(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["refresh_token"]
        if sent not in self.live.values():
            return httpx.Response(200, json=envelope(code=40107, message="rotated"))
        self.live = {a: r for a, r in self.live.items() if r != sent}
        response = self.issue(request)
        self._remember()
        return response

    def _revoke(self, request: httpx.Request) -> httpx.Response:
        token = json.loads(request.content)["access_token"]
        if token not in self.live:
            return httpx.Response(200, json=envelope(code=40105, message="invalid"))
        if self.expiry[token] <= self.clock.now().timestamp():
            return httpx.Response(200, json=envelope(code=40102, message="expired"))
        if self.failing_revokes:
            self.failing_revokes -= 1
            return httpx.Response(200, json=envelope(code=50000, message="busy"))
        del self.live[token]
        return httpx.Response(200, json=envelope())


@pytest.fixture
def tiktok(canaries: Canaries, clock: FakeClock) -> Iterator[ScoringTikTok]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield ScoringTikTok(mock, canaries, clock)


async def test_delete_that_refreshed_then_failed_keeps_the_chain_for_its_retry(
    client: httpx.AsyncClient, tiktok: ScoringTikTok, api_key: str, clock: FakeClock
) -> None:
    await connect_account(client)
    clock.advance(hours=25)  # the stored access token has expired: revoking refreshes first
    tiktok.failing_revokes = 4  # every attempt of the first DELETE
    url = f"/tokens/accounts/{OPEN_ID}"
    assert (await client.delete(url, headers=bearer(api_key))).status_code == 503
    assert len(tiktok.live) == 1  # the rotated chain
    retried = await client.delete(url, headers=bearer(api_key))
    assert retried.status_code == 200, retried.text
    assert retried.json()["revoked_now"] is True
    assert tiktok.live == {}


async def test_a_replaced_chain_the_worker_refreshed_before_a_failed_revoke_is_revoked_later(
    client: httpx.AsyncClient,
    tiktok: ScoringTikTok,
    service: Service,
    clock: FakeClock,
    pg: asyncpg.Connection,
) -> None:
    await connect_account(client)
    tiktok.failing_revokes = 8  # every attempt right after re-authorizing, then the worker's
    await connect_account(client)
    assert len(tiktok.live) == 2
    clock.advance(hours=25)  # the replaced chain's access token expired meanwhile
    await service.worker.drain()  # refreshes it, then the revoke fails: the pair is kept
    clock.advance(hours=1)  # past the backoff
    await service.worker.drain()
    await service.worker.drain()
    statuses = sorted(await pg.fetch("SELECT status FROM oauth_grant WHERE open_id IS NULL"))
    assert [row["status"] for row in statuses] == ["revoked"]
    assert len(tiktok.live) == 1  # only the chain that serves the account


async def test_racing_reauthorizations_leave_no_live_grant_serving_nobody(
    client: httpx.AsyncClient, service: Service, canaries: Canaries, pg: asyncpg.Connection
) -> None:
    advertisers = ["7100000000000000001", "7100000000000000002"]
    tokens = [new_token() for _ in range(3)]
    canaries.add(*tokens)
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as tiktok:
        tiktok.post("/oauth2/access_token/").mock(
            side_effect=[
                httpx.Response(
                    200, json=envelope({"access_token": t, "advertiser_ids": advertisers})
                )
                for t in tokens
            ]
        )
        tiktok.get("/oauth2/advertiser/get/").respond(json=envelope({"list": []}))
        revoke = tiktok.post("/oauth2/revoke_token/").respond(json=envelope())
        states = [await start_authorization(client) for _ in range(3)]
        await asyncio.gather(
            *(client.get("/callback", params={"auth_code": "c", "state": s}) for s in states)
        )
    # Every grant but the one serving both advertisers was revoked at TikTok.
    live = await pg.fetchval("SELECT count(*) FROM oauth_grant WHERE status = 'active'")
    assert live == 1
    assert revoke.call_count == 2


async def test_a_sync_never_removes_an_advertiser_another_grant_now_serves(
    service: Service, canaries: Canaries, pg: asyncpg.Connection, clock: FakeClock
) -> None:
    from tests.helpers import store_advertiser_grant

    old, new = new_token(), new_token()
    canaries.add(old, new)
    a, b = "7100000000000000001", "7100000000000000002"
    old_id = await store_advertiser_grant(service, old, [a, b])
    new_id = await store_advertiser_grant(service, new, [a])  # A moved to the new grant
    async with service.db.session() as session, session.begin():
        # The old grant's sync, holding stale rows, marks A removed: it is not its row now.
        await Repository(session).set_advertiser_status(
            old_id, [a], AdvertiserStatus.REMOVED, clock.now()
        )
    row = await pg.fetchrow("SELECT grant_id, status FROM advertiser WHERE advertiser_id = $1", a)
    assert (row["grant_id"], row["status"]) == (new_id, "active")
