"""TikTok-account (tt_user) tokens: authorization, refresh on read, rotation, terminal answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import (
    APP_ID,
    APP_SECRET,
    FRONTEND,
    OPEN_ID,
    REDIRECT_URI,
    TIKTOK_API,
    Canaries,
    FakeClock,
    bearer,
)
from tests.helpers import TikTokAccounts, connect_account, query_of, start_through
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)


@pytest.fixture
def tiktok(canaries: Canaries, clock: FakeClock) -> Iterator[TikTokAccounts]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield TikTokAccounts(mock, canaries, clock)


class TestAccountAuthorization:
    async def test_consent_url_uses_login_kit_parameters(self, client: httpx.AsyncClient) -> None:
        response = await start_through(client, "/authorize", flow="tiktok_account")
        location = response.headers["location"]
        assert location.startswith("https://www.tiktok.com/v2/auth/authorize/?")
        query = query_of(location)
        assert query["client_key"] == APP_ID
        assert query["response_type"] == "code"
        assert query["scope"] == "user.info.basic"
        assert query["redirect_uri"] == REDIRECT_URI
        assert "app_id" not in query

    async def test_callback_exchanges_through_tt_user_endpoint(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        response = await connect_account(client)
        assert response.status_code == 302
        assert response.headers["location"] == f"{FRONTEND}/ok?status=connected&open_id={OPEN_ID}"
        assert json.loads(tiktok.exchange.calls.last.request.content) == {
            "client_id": APP_ID,
            "client_secret": APP_SECRET,
            "grant_type": "authorization_code",
            "auth_code": "tt-code",
            "redirect_uri": REDIRECT_URI,
        }
        served = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert served.status_code == 200
        body = served.json()
        assert body["access_token"] == tiktok.access_tokens[0]
        assert body["scope"] == ["user.info.basic", "video.list"]
        assert body["status"] == "active"
        assert "refresh_token" not in body and tiktok.refresh_tokens[0] not in served.text
        assert not tiktok.refresh.called
        for table in ("oauth_grant", "api_client", "oauth_state"):
            dump = str(await pg.fetch(f"SELECT t::text FROM {table} AS t"))  # noqa: S608
            assert tiktok.refresh_tokens[0] not in dump and tiktok.access_tokens[0] not in dump

    async def test_reauthorizing_serves_the_new_chain_and_revokes_the_replaced_one(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        await connect_account(client)
        await connect_account(client)
        served = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert served.json()["access_token"] == tiktok.access_tokens[1]
        assert tiktok.revoke.call_count == 1
        assert (
            json.loads(tiktok.revoke.calls.last.request.content)["access_token"]
            == (tiktok.access_tokens[0])
        )
        rows = await pg.fetch("SELECT open_id, status FROM oauth_grant ORDER BY status")
        assert [(r["open_id"], r["status"]) for r in rows] == [
            (OPEN_ID, "active"),
            (None, "revoked"),
        ]


class TestRefreshOnRead:
    async def test_expiring_token_is_refreshed_and_rotation_is_stored(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, api_key: str, clock: FakeClock
    ) -> None:
        await connect_account(client)
        clock.advance(hours=23, minutes=56)  # inside the 300 s leeway
        served = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert served.json()["access_token"] == tiktok.access_tokens[1]
        sent = json.loads(tiktok.refresh.calls.last.request.content)
        assert sent == {
            "client_id": APP_ID,
            "client_secret": APP_SECRET,
            "grant_type": "refresh_token",
            "refresh_token": tiktok.refresh_tokens[0],
        }
        clock.advance(hours=23, minutes=56)
        await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        sent = json.loads(tiktok.refresh.calls.last.request.content)
        assert sent["refresh_token"] == tiktok.refresh_tokens[1]  # never the rotated-out one
        assert tiktok.refresh.call_count == 2

    async def test_min_valid_for_forces_an_earlier_refresh(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, api_key: str, clock: FakeClock
    ) -> None:
        await connect_account(client)
        clock.advance(hours=23, minutes=1)  # 59 minutes left
        url = f"/tokens/accounts/{OPEN_ID}"
        plain = await client.get(url, headers=bearer(api_key))
        assert plain.json()["access_token"] == tiktok.access_tokens[0]
        asked = await client.get(url, params={"min_valid_for": 3600}, headers=bearer(api_key))
        assert asked.json()["access_token"] == tiktok.access_tokens[1]

    async def test_min_valid_for_is_capped_so_reads_cannot_force_refreshes(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, api_key: str
    ) -> None:
        await connect_account(client)
        url = f"/tokens/accounts/{OPEN_ID}"
        too_long = await client.get(url, params={"min_valid_for": 3601}, headers=bearer(api_key))
        assert too_long.status_code == 422
        assert not tiktok.refresh.called

    async def test_readers_asking_for_different_times_share_one_refresh(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, api_key: str, clock: FakeClock
    ) -> None:
        await connect_account(client)
        clock.advance(hours=23, minutes=57)
        url = f"/tokens/accounts/{OPEN_ID}"
        responses = await asyncio.gather(
            *(
                client.get(url, params={"min_valid_for": seconds}, headers=bearer(api_key))
                for seconds in range(300, 330)
            )
        )
        assert {r.json()["access_token"] for r in responses} == {tiktok.access_tokens[1]}
        assert tiktok.refresh.call_count == 1

    async def test_readers_asking_for_more_time_do_not_get_a_shorter_token(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, api_key: str, clock: FakeClock
    ) -> None:
        await connect_account(client)
        clock.advance(hours=23, minutes=57)
        url = f"/tokens/accounts/{OPEN_ID}"
        short, long = await asyncio.gather(
            client.get(url, headers=bearer(api_key)),
            client.get(url, params={"min_valid_for": 3600}, headers=bearer(api_key)),
        )
        assert tiktok.refresh.call_count == 1
        assert short.json()["access_token"] == long.json()["access_token"]
        assert long.json()["access_token"] == tiktok.access_tokens[1]

    async def test_concurrent_readers_share_one_refresh(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, api_key: str, clock: FakeClock
    ) -> None:
        await connect_account(client)
        clock.advance(hours=24)
        responses = await asyncio.gather(
            *(client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key)) for _ in range(30))
        )
        assert {r.status_code for r in responses} == {200}
        assert {r.json()["access_token"] for r in responses} == {tiktok.access_tokens[1]}
        assert tiktok.refresh.call_count == 1

    @pytest.mark.parametrize("code", [40103, 40107, 40105])
    async def test_terminal_answer_requires_reauthorization(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
        pg: asyncpg.Connection,
        code: int,
    ) -> None:
        await connect_account(client)
        tiktok.refresh_fails(code)
        clock.advance(hours=24)
        url = f"/tokens/accounts/{OPEN_ID}"
        response = await client.get(url, headers=bearer(api_key))
        assert response.status_code == 409
        assert response.json()["code"] == "reauthorization_required"
        assert await pg.fetchval("SELECT status FROM oauth_grant") == "reauthorization_required"
        assert (await client.get(url, headers=bearer(api_key))).status_code == 409
        assert tiktok.refresh.call_count == 1

    async def test_transient_failure_serves_the_still_valid_token(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        await connect_account(client)
        tiktok.refresh_fails(50000)
        clock.advance(hours=23, minutes=58)
        url = f"/tokens/accounts/{OPEN_ID}"
        response = await client.get(url, headers=bearer(api_key))
        assert response.status_code == 200
        assert response.json()["access_token"] == tiktok.access_tokens[0]
        assert tiktok.refresh.call_count == 1  # a refresh is never repeated blindly
        clock.advance(minutes=3)  # now expired
        expired = await client.get(url, headers=bearer(api_key))
        assert expired.status_code == 503
        assert expired.headers["retry-after"] == "30"
        assert expired.json()["code"] == "upstream_unavailable"

    async def test_a_failed_refresh_is_not_retried_by_every_read(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        await connect_account(client)
        tiktok.refresh_fails(50000)
        clock.advance(hours=23, minutes=57)
        url = f"/tokens/accounts/{OPEN_ID}"
        for _ in range(5):
            assert (await client.get(url, headers=bearer(api_key))).status_code == 200
            clock.advance(seconds=5)
        assert tiktok.refresh.call_count == 1  # backing off: reads serve the stored token
        clock.advance(seconds=10)  # the first backoff (30 s) is over
        assert (await client.get(url, headers=bearer(api_key))).status_code == 200
        assert tiktok.refresh.call_count == 2

    async def test_refresh_token_past_its_year_is_not_sent(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        await connect_account(client)
        clock.advance(days=366)
        response = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert response.status_code == 409
        assert not tiktok.refresh.called

    async def test_refresh_expiry_is_reported_ahead(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        await connect_account(client)
        clock.advance(days=352)
        body = (await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))).json()
        assert body["status"] == "refresh_expiring"
        assert body["refresh_expires_at"].startswith("2027-11-24")

    async def test_key_restricted_to_other_accounts_is_forbidden(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        service: Service,
        canaries: Canaries,
    ) -> None:
        await connect_account(client)
        advertiser_only = (await service.api_keys.create("ads", ["71"])).key.get_secret_value()
        this_account = (await service.api_keys.create("acc", [], [OPEN_ID])).key.get_secret_value()
        canaries.add(advertiser_only, this_account)
        url = f"/tokens/accounts/{OPEN_ID}"
        assert (await client.get(url, headers=bearer(advertiser_only))).status_code == 403
        assert (await client.get(url, headers=bearer(this_account))).status_code == 200
        assert (
            await client.get("/tokens/accounts/other", headers=bearer(this_account))
        ).status_code == 403

    async def test_unknown_account_is_404(self, client: httpx.AsyncClient, api_key: str) -> None:
        response = await client.get("/tokens/accounts/nobody", headers=bearer(api_key))
        assert response.status_code == 404


class TestConcurrentFirstAuthorization:
    async def test_two_tabs_authorizing_one_account_make_one_grant(
        self, client: httpx.AsyncClient, tiktok: TikTokAccounts, pg: asyncpg.Connection
    ) -> None:
        first, second = await asyncio.gather(connect_account(client), connect_account(client))
        assert (first.status_code, second.status_code) == (302, 302)
        assert "status=connected" in first.headers["location"]
        assert "status=connected" in second.headers["location"]
        # Exactly one live chain: the other was revoked at TikTok.
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant WHERE status = 'active'") == 1
        assert tiktok.revoke.call_count == 1
