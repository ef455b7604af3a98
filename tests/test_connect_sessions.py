"""Only invited people connect: /authorize needs a single-use link that an API caller opened
with POST /connect-sessions (CONNECT_SESSIONS_REQUIRED, the default). TikTok faked by respx."""

from __future__ import annotations

import json
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import (
    FRONTEND,
    TIKTOK_API,
    TIKTOK_AUTH,
    Canaries,
    FakeClock,
    bearer,
    make_settings,
)
from tests.helpers import (
    continue_to_tiktok,
    envelope,
    new_token,
    query_of,
    start_through,
    store_advertiser_grant,
    the_form,
)
from tests.test_authorization import HOSTILE_RETURN_TO
from tiktok_auth_service.config import Settings
from tiktok_auth_service.service import Service

A, B = "7100000000000000001", "7100000000000000002"


@pytest.fixture
def settings(migrated: str) -> Settings:
    return make_settings(migrated, connect_sessions_required=True)


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


def tiktok_grants(tiktok: respx.MockRouter, canaries: Canaries, advertisers: list[str]) -> str:
    token = new_token()
    canaries.add(token)
    tiktok.post("/oauth2/access_token/").respond(
        json=envelope({"access_token": token, "advertiser_ids": advertisers, "scope": [4]})
    )
    tiktok.get("/oauth2/advertiser/get/").respond(
        json=envelope({"list": [{"advertiser_id": a, "advertiser_name": a} for a in advertisers]})
    )
    return token


async def open_link(client: httpx.AsyncClient, key: str, **body: str) -> str:
    response = await client.post("/connect-sessions", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


async def connect_through(client: httpx.AsyncClient, link: str) -> httpx.Response:
    """Follow a connect link to TikTok (through its page) and come back with TikTok's code."""
    start = await start_through(client, link)
    assert start.status_code == 303, start.text
    state = query_of(start.headers["location"])["state"]
    return await client.get("/callback", params={"auth_code": "the-code", "state": state})


class TestAuthorizeNeedsALink:
    async def test_without_a_session_nothing_is_written_and_the_answer_is_401(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        for _ in range(20):
            response = await client.get("/authorize", params={"return_to": f"{FRONTEND}/x"})
            assert response.status_code == 401
            assert response.json()["code"] == "connect_session_required"
        page = await client.get("/authorize", headers={"accept": "text/html"})
        assert page.status_code == 401
        assert page.headers["content-type"].startswith("text/html")
        assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 0

    async def test_a_link_works_once_and_only_before_it_expires(
        self, client: httpx.AsyncClient, api_key: str, clock: FakeClock
    ) -> None:
        link = await open_link(client, api_key)
        assert link.startswith("https://broker.example/authorize?session=")
        first = await start_through(client, link)
        assert first.status_code == 303
        assert first.headers["location"].startswith(TIKTOK_AUTH + "?")
        again = await client.get(link)
        assert again.status_code == 400
        assert again.json()["code"] == "invalid_session"
        late = await open_link(client, api_key)
        page = await client.get(late)
        clock.advance(seconds=601)
        assert (await client.get(late)).json()["code"] == "invalid_session"
        # A page opened in time does not make the link outlive its expiry.
        assert (await continue_to_tiktok(client, page)).json()["code"] == "invalid_session"
        forged = await client.get("/authorize", params={"session": "x" * 43})
        assert forged.json()["code"] == "invalid_session"
        posted = await client.post("/authorize", data={"session": "x" * 43})
        assert posted.json()["code"] == "invalid_session"

    async def test_opening_a_link_needs_a_valid_key_and_an_allowed_return_to(
        self, client: httpx.AsyncClient, api_key: str, service: Service
    ) -> None:
        missing = await client.post("/connect-sessions", json={})
        assert missing.status_code == 401
        wrong = await client.post("/connect-sessions", json={}, headers=bearer("tas_" + "x" * 43))
        assert wrong.status_code == 401
        elsewhere = await client.post(
            "/connect-sessions",
            json={"return_to": "https://evil.example/"},
            headers=bearer(api_key),
        )
        assert elsewhere.status_code == 400
        assert elsewhere.json()["code"] == "return_to_not_allowed"
        await service.api_keys.revoke("reporting")
        revoked = await client.post("/connect-sessions", json={}, headers=bearer(api_key))
        assert revoked.status_code == 401

    async def test_without_a_valid_key_return_to_is_not_checked(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        # The allowed origins are nobody's business but the keys' holders: a caller without
        # a valid key learns nothing about them from the answer.
        for headers in ({}, bearer("tas_" + "x" * 43)):
            for return_to in ("https://evil.example/", f"{FRONTEND}/ok"):
                response = await client.post(
                    "/connect-sessions", json={"return_to": return_to}, headers=headers
                )
                assert response.status_code == 401, response.text
                assert response.json()["code"] == "unauthenticated"
        assert await pg.fetchval("SELECT count(*) FROM connect_session") == 0

    async def test_a_link_whose_key_was_revoked_meanwhile_connects_nothing(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        link = await open_link(client, api_key)
        await service.api_keys.revoke("reporting")
        answer = await connect_through(client, link)
        assert answer.status_code == 400
        assert answer.json()["code"] == "invalid_state"
        assert "revoked" in answer.json()["detail"]
        assert not exchange.called
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0

    async def test_its_state_is_kept_a_day_past_expiry_then_dropped(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        clock: FakeClock,
        pg: asyncpg.Connection,
        tiktok: respx.MockRouter,
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        start = await start_through(client, await open_link(client, api_key))
        state = query_of(start.headers["location"])["state"]
        clock.advance(minutes=11)
        late = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert late.json()["code"] == "invalid_state"
        assert "has expired" in late.json()["detail"]
        clock.advance(days=1)
        await open_link(client, api_key)
        assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 0
        assert not exchange.called

    @pytest.mark.parametrize("bad", HOSTILE_RETURN_TO)
    async def test_a_link_cannot_send_the_browser_elsewhere(
        self, client: httpx.AsyncClient, api_key: str, pg: asyncpg.Connection, bad: str
    ) -> None:
        opened = await client.post(
            "/connect-sessions", json={"return_to": bad}, headers=bearer(api_key)
        )
        assert opened.status_code == 400
        assert opened.json()["code"] == "return_to_not_allowed"
        assert await pg.fetchval("SELECT count(*) FROM connect_session") == 0

    async def test_the_link_decides_the_flow_and_where_the_browser_returns(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        link = await open_link(client, api_key, flow="tiktok_account", return_to=f"{FRONTEND}/a")
        # Parameters added to the link's URL or to its form cannot change what the caller
        # opened.
        page = await client.get(link + "&flow=advertiser&return_to=https://evil.example/")
        assert page.status_code == 200
        assert "TikTok account" in page.text
        _, action, fields = the_form(page)
        assert fields == {"session": query_of(link)["session"]}
        extra = {"flow": "advertiser", "return_to": "https://evil.example/"}
        start = await client.post(action, data={**fields, **extra})
        consent = query_of(start.headers["location"])
        assert consent["response_type"] == "code"  # TikTok's Login Kit: the account flow


class TestLinkPreviews:
    """A chat app's preview bot fetches the link before the person clicks it."""

    @pytest.mark.parametrize(
        "agent",
        [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "TelegramBot (like TwitterBot)",
        ],
    )
    async def test_a_preview_spends_nothing_and_the_person_still_connects(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
        agent: str,
    ) -> None:
        tiktok_grants(tiktok, canaries, [A])
        link = await open_link(client, api_key, return_to=f"{FRONTEND}/done")
        preview = {"user-agent": agent}
        await client.head(link, headers=preview)
        await client.get(link, headers=preview)
        # Neither spent the link, started an authorization nor handed out a binding.
        assert await pg.fetchval("SELECT used_at FROM connect_session") is None
        assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 0
        assert list(client.cookies.jar) == []
        answer = await connect_through(client, link)
        assert query_of(answer.headers["location"])["status"] == "connected"

    async def test_the_page_continues_only_once(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        link = await open_link(client, api_key)
        page = await client.get(link)
        assert (await start_through(client, link)).status_code == 303
        again = await client.get(link)
        assert again.status_code == 400
        assert again.json()["code"] == "invalid_session"
        _, action, fields = the_form(page)
        replayed = await client.post(action, data=fields)
        assert replayed.status_code == 400
        assert replayed.json()["code"] == "invalid_session"


class TestWhoConnected:
    async def test_the_grant_records_the_key_and_end_user_shown_with_its_token(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
    ) -> None:
        token = tiktok_grants(tiktok, canaries, [A])
        link = await open_link(client, api_key, return_to=f"{FRONTEND}/done", end_user="user-42")
        answer = await connect_through(client, link)
        assert query_of(answer.headers["location"]) == {
            "status": "connected",
            "advertiser_ids": A,
        }
        served = (await client.get(f"/tokens/{A}", headers=bearer(api_key))).json()
        assert served["access_token"] == token
        assert (served["connected_by"], served["end_user"]) == ("reporting", "user-42")

    @pytest.mark.parametrize(
        "label",
        ["'); DROP TABLE oauth_grant; --", "Zoë 🎉 \u202eevil", "x' OR '1'='1", "\\x00 %s {0}"],
    )
    async def test_sql_looking_and_unicode_labels_are_kept_verbatim(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
        label: str,
    ) -> None:
        tiktok_grants(tiktok, canaries, [A])
        link = await open_link(client, api_key, end_user=label)
        assert (await connect_through(client, link)).status_code == 200
        served = (await client.get(f"/tokens/{A}", headers=bearer(api_key))).json()
        assert served["end_user"] == label
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 1

    async def test_end_user_must_be_a_printable_label(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        for label in ("a\nb", "x" * 257):
            response = await client.post(
                "/connect-sessions", json={"end_user": label}, headers=bearer(api_key)
            )
            assert response.status_code == 422


class TestRestrictedKeys:
    async def test_a_restricted_key_opens_links_only_for_what_it_may_read(
        self, client: httpx.AsyncClient, service: Service, canaries: Canaries
    ) -> None:
        key = (await service.api_keys.create("shop-a", [A])).key.get_secret_value()
        canaries.add(key)
        account = await client.post(
            "/connect-sessions", json={"flow": "tiktok_account"}, headers=bearer(key)
        )
        assert account.status_code == 403
        assert (
            await client.post("/connect-sessions", json={}, headers=bearer(key))
        ).status_code == 201

    async def test_its_link_cannot_take_over_advertisers_outside_its_list(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        canaries: Canaries,
        api_key: str,
    ) -> None:
        existing = new_token()
        canaries.add(existing)
        await store_advertiser_grant(service, existing, [B])
        key = (await service.api_keys.create("shop-a", [A])).key.get_secret_value()
        canaries.add(key)
        token = tiktok_grants(tiktok, canaries, [A, B])
        answer = await connect_through(client, await open_link(client, key))
        assert answer.status_code == 200
        assert (await client.get(f"/tokens/{A}", headers=bearer(key))).json()["access_token"] == (
            token
        )
        # B is still served by the token its own grant holds.
        served_b = await client.get(f"/tokens/{B}", headers=bearer(api_key))
        assert served_b.json()["access_token"] == existing

    async def test_a_grant_it_may_not_serve_is_refused_and_revoked(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        canaries: Canaries,
        pg: asyncpg.Connection,
    ) -> None:
        key = (await service.api_keys.create("shop-a", [A])).key.get_secret_value()
        canaries.add(key)
        token = tiktok_grants(tiktok, canaries, [B])
        revoke = tiktok.post("/oauth2/revoke_token/").respond(json=envelope())
        answer = await connect_through(client, await open_link(client, key))
        assert answer.status_code == 403
        assert json.loads(revoke.calls.last.request.content)["access_token"] == token
        assert await pg.fetchval("SELECT status FROM oauth_grant") == "revoked"
        assert await pg.fetchval("SELECT count(*) FROM advertiser") == 0
