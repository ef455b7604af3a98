"""Only invited people connect: /authorize needs a single-use link that an API caller opened
with POST /connect-sessions (CONNECT_SESSIONS_REQUIRED, the default). TikTok faked by respx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import (
    FRONTEND,
    OPEN_ID,
    TIKTOK_API,
    TIKTOK_AUTH,
    Canaries,
    FakeClock,
    bearer,
)
from tests.helpers import (
    TikTokAccounts,
    continue_to_tiktok,
    envelope,
    new_token,
    query_of,
    start_through,
    store_advertiser_grant,
    the_form,
)
from tests.test_authorization import HOSTILE_RETURN_TO
from tiktok_auth_service.service import Service

A, B = "7100000000000000001", "7100000000000000002"


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
        back = query_of(answer.headers["location"])
        assert back == {
            "status": "connected",
            "advertiser_ids": A,
            "session_id": back["session_id"],
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


async def open_session(client: httpx.AsyncClient, key: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/connect-sessions", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    opened: dict[str, Any] = response.json()
    return opened


async def outcome(client: httpx.AsyncClient, key: str, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/connect-sessions/{session_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


class TestVerifiableOutcome:
    """The query string of the redirect back is the browser's word; GET /connect-sessions/{id}
    with the key that opened the session is the service's."""

    async def test_a_session_has_an_id_apart_from_its_link_and_starts_pending(
        self, client: httpx.AsyncClient, api_key: str, clock: FakeClock
    ) -> None:
        opened = await open_session(client, api_key, end_user="user-42")
        session_id = opened["id"]
        assert str(uuid.UUID(session_id)) == session_id
        assert session_id not in opened["url"]
        assert query_of(opened["url"])["session"] != session_id
        answer = await outcome(client, api_key, session_id)
        assert answer == {
            "id": session_id,
            "status": "pending",
            "flow": "advertiser",
            "advertiser_ids": [],
            "open_id": None,
            "error": None,
            "end_user": "user-42",
            "tags": {},
            "created_at": answer["created_at"],
            "expires_at": opened["expires_at"],
            "started_at": None,
            "completed_at": None,
        }
        assert datetime.fromisoformat(answer["created_at"]) == clock.now()

    async def test_connected_the_redirect_names_the_session_and_the_service_confirms_it(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        tiktok_grants(tiktok, canaries, [A, B])
        opened = await open_session(
            client, api_key, return_to=f"{FRONTEND}/done?session_id=forged", end_user="user-42"
        )
        answer = await connect_through(client, opened["url"])
        back = query_of(answer.headers["location"])
        assert back == {
            "status": "connected",
            "advertiser_ids": f"{A},{B}",
            "session_id": opened["id"],
        }
        confirmed = await outcome(client, api_key, opened["id"])
        assert confirmed["status"] == "connected"
        assert (confirmed["advertiser_ids"], confirmed["open_id"]) == ([A, B], None)
        assert (confirmed["end_user"], confirmed["error"]) == ("user-42", None)
        assert confirmed["started_at"] == confirmed["completed_at"]
        assert datetime.fromisoformat(confirmed["completed_at"]) == clock.now()

    async def test_an_account_connected_is_confirmed_with_its_open_id(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        TikTokAccounts(tiktok, canaries, clock)
        opened = await open_session(
            client, api_key, flow="tiktok_account", return_to=f"{FRONTEND}/done"
        )
        start = await start_through(client, opened["url"])
        state = query_of(start.headers["location"])["state"]
        answer = await client.get("/callback", params={"code": "tt-code", "state": state})
        assert query_of(answer.headers["location"]) == {
            "status": "connected",
            "open_id": OPEN_ID,
            "session_id": opened["id"],
        }
        confirmed = await outcome(client, api_key, opened["id"])
        assert (confirmed["status"], confirmed["flow"]) == ("connected", "tiktok_account")
        assert (confirmed["open_id"], confirmed["advertiser_ids"]) == (OPEN_ID, [])

    async def test_denied_at_tiktok(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        opened = await open_session(client, api_key, return_to=f"{FRONTEND}/done")
        start = await start_through(client, opened["url"])
        state = query_of(start.headers["location"])["state"]
        answer = await client.get("/callback", params={"error": "access_denied", "state": state})
        assert query_of(answer.headers["location"]) == {
            "status": "error",
            "error": "authorization_denied",
            "session_id": opened["id"],
        }
        confirmed = await outcome(client, api_key, opened["id"])
        assert (confirmed["status"], confirmed["error"]) == ("denied", "authorization_denied")
        assert confirmed["advertiser_ids"] == [] and confirmed["completed_at"] is not None
        assert not exchange.called

    async def test_failed_when_tiktok_refuses_the_code(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str
    ) -> None:
        tiktok.post("/oauth2/access_token/").respond(
            json=envelope(code=40110, message="auth_code is invalid")
        )
        opened = await open_session(client, api_key, return_to=f"{FRONTEND}/done")
        answer = await connect_through(client, opened["url"])
        assert query_of(answer.headers["location"])["session_id"] == opened["id"]
        confirmed = await outcome(client, api_key, opened["id"])
        assert (confirmed["status"], confirmed["error"]) == ("failed", "authorization_failed")

    async def test_failed_when_the_key_may_serve_nothing_granted(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        service: Service,
        canaries: Canaries,
    ) -> None:
        key = (await service.api_keys.create("shop-a", [A])).key.get_secret_value()
        canaries.add(key)
        tiktok_grants(tiktok, canaries, [B])
        tiktok.post("/oauth2/revoke_token/").respond(json=envelope())
        opened = await open_session(client, key)
        assert (await connect_through(client, opened["url"])).status_code == 403
        confirmed = await outcome(client, key, opened["id"])
        assert (confirmed["status"], confirmed["error"]) == ("failed", "forbidden")
        assert confirmed["advertiser_ids"] == []

    async def test_a_replayed_callback_leaves_the_outcome_alone(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
    ) -> None:
        tiktok_grants(tiktok, canaries, [A])
        opened = await open_session(client, api_key, return_to=f"{FRONTEND}/done")
        start = await start_through(client, opened["url"])
        state = query_of(start.headers["location"])["state"]
        assert (
            await client.get("/callback", params={"auth_code": "c", "state": state})
        ).is_redirect
        replay = await client.get("/callback", params={"error": "access_denied", "state": state})
        assert replay.json()["code"] == "invalid_state"
        confirmed = await outcome(client, api_key, opened["id"])
        assert (confirmed["status"], confirmed["advertiser_ids"]) == ("connected", [A])

    async def test_expired_when_the_link_was_never_used(
        self, client: httpx.AsyncClient, api_key: str, clock: FakeClock
    ) -> None:
        opened = await open_session(client, api_key)
        clock.advance(seconds=599)
        assert (await outcome(client, api_key, opened["id"]))["status"] == "pending"
        clock.advance(seconds=1)
        assert (await outcome(client, api_key, opened["id"]))["status"] == "expired"

    async def test_expired_when_the_authorization_it_started_never_came_back(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        opened = await open_session(client, api_key, return_to=f"{FRONTEND}/done")
        clock.advance(seconds=300)
        start = await start_through(client, opened["url"])
        state = query_of(start.headers["location"])["state"]
        clock.advance(seconds=400)  # past the link's expiry, not the state's
        pending = await outcome(client, api_key, opened["id"])
        assert pending["status"] == "pending"
        assert datetime.fromisoformat(pending["started_at"]) == clock.now() - timedelta(seconds=400)
        assert datetime.fromisoformat(pending["expires_at"]) == clock.now() + timedelta(seconds=200)
        clock.advance(seconds=200)
        assert (await outcome(client, api_key, opened["id"]))["status"] == "expired"
        late = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert late.json()["code"] == "invalid_state"
        assert (await outcome(client, api_key, opened["id"]))["status"] == "expired"
        assert not exchange.called

    async def test_only_the_key_that_opened_it_may_read_it(
        self, client: httpx.AsyncClient, api_key: str, service: Service, canaries: Canaries
    ) -> None:
        opened = await open_session(client, api_key)
        other = (await service.api_keys.create("billing", [])).key.get_secret_value()
        canaries.add(other)
        url = f"/connect-sessions/{opened['id']}"
        elsewhere = await client.get(url, headers=bearer(other))
        unknown = await client.get(f"/connect-sessions/{uuid.uuid4()}", headers=bearer(other))
        # Another key cannot tell a session of someone else's from one that does not exist.
        assert elsewhere.status_code == unknown.status_code == 404
        assert elsewhere.json() == unknown.json()
        assert elsewhere.json()["code"] == "connect_session_not_found"
        assert elsewhere.headers["content-type"] == "application/problem+json"
        for headers in ({}, bearer("tas_" + "x" * 43)):
            refused = await client.get(url, headers=headers)
            assert refused.status_code == 401
            assert refused.json()["code"] == "unauthenticated"
        await service.api_keys.revoke("reporting")
        assert (await client.get(url, headers=bearer(api_key))).status_code == 401

    @pytest.mark.parametrize("made_up", ["not-a-uuid", "0" * 40, "%00", "1' OR '1'='1"])
    async def test_an_id_that_is_not_one_is_unknown(
        self, client: httpx.AsyncClient, api_key: str, made_up: str
    ) -> None:
        response = await client.get(f"/connect-sessions/{made_up}", headers=bearer(api_key))
        assert response.status_code == 404
        assert response.json()["code"] == "connect_session_not_found"

    async def test_a_hand_made_redirect_cannot_be_confirmed(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        # What a product does with the redirect: ask the service, server side, with its key.
        async def confirm(redirect: str) -> httpx.Response:
            claimed = query_of(redirect)["session_id"]
            return await client.get(f"/connect-sessions/{claimed}", headers=bearer(api_key))

        forged = f"{FRONTEND}/done?status=connected&advertiser_ids=999&session_id="
        made_up = await confirm(forged + str(uuid.uuid4()))
        assert made_up.status_code == 404
        # A real session's id, on a redirect the service never made: still pending.
        pending = await open_session(client, api_key, return_to=f"{FRONTEND}/done")
        answer = await confirm(forged + pending["id"])
        assert (answer.json()["status"], answer.json()["advertiser_ids"]) == ("pending", [])

    async def test_the_outcome_outlives_the_state_and_is_kept_thirty_days(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        clock: FakeClock,
        pg: asyncpg.Connection,
    ) -> None:
        tiktok_grants(tiktok, canaries, [A])
        opened = await open_session(client, api_key, return_to=f"{FRONTEND}/done")
        await connect_through(client, opened["url"])
        clock.advance(days=2)
        await open_session(client, api_key)  # opening a link drops what has expired
        assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 0
        confirmed = await outcome(client, api_key, opened["id"])
        assert (confirmed["status"], confirmed["advertiser_ids"]) == ("connected", [A])
        clock.advance(days=28)
        await open_session(client, api_key)
        assert (await outcome(client, api_key, opened["id"]))["status"] == "connected"
        clock.advance(minutes=11)
        await open_session(client, api_key)
        gone = await client.get(f"/connect-sessions/{opened['id']}", headers=bearer(api_key))
        assert gone.status_code == 404


class TestTags:
    """Tags map a connection to the caller's own tenants: given when the session is opened,
    kept by the grant it produces, replaced by the next session's on re-authorization."""

    @pytest.mark.parametrize(
        ("tags", "complaint"),
        [
            ({f"k{n}": "v" for n in range(11)}, "at most 10"),
            ({"": "v"}, "at least 1 character"),
            ({"k" * 65: "v"}, "at most 64 characters"),
            ({"tenant": "v" * 256}, "at most 255 characters"),
            ({"tenant": 42}, "valid string"),
            ({"tenant": None}, "valid string"),
            (["tenant", "acme"], "valid dictionary"),
            ({"tenant:id": "acme"}, "should match pattern"),
            ({"tenant": "a\x00b"}, "should match pattern"),  # jsonb cannot hold a NUL
            ({"ten\nant": "acme"}, "should match pattern"),
        ],
    )
    async def test_tags_out_of_bounds_are_a_422_and_write_nothing(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        pg: asyncpg.Connection,
        tags: Any,
        complaint: str,
    ) -> None:
        response = await client.post(
            "/connect-sessions", json={"tags": tags}, headers=bearer(api_key)
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "validation_error"
        assert "tags" in problem["detail"] and complaint in problem["detail"], problem["detail"]
        assert await pg.fetchval("SELECT count(*) FROM connect_session") == 0

    async def test_ten_tags_at_the_limits_are_accepted(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        tags = {f"{n}" + "k" * 63: "v" * 255 for n in range(9)} | {"t": ""}
        opened = await open_session(client, api_key, tags=tags)
        assert (await outcome(client, api_key, opened["id"]))["tags"] == tags

    async def test_the_grant_keeps_its_sessions_tags_until_a_new_session_replaces_them(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
    ) -> None:
        first_tags = {"tenant": "acme", "plan": "pro"}
        tiktok_grants(tiktok, canaries, [A, B])
        opened = await open_session(client, api_key, tags=first_tags)
        assert (await connect_through(client, opened["url"])).status_code == 200
        assert (await outcome(client, api_key, opened["id"]))["tags"] == first_tags
        for _ in range(2):  # the second read is answered by the token cache
            served = await client.get(f"/tokens/{A}", headers=bearer(api_key))
            assert served.json()["tags"] == first_tags
        listed = await client.get("/connections", headers=bearer(api_key))
        assert [item["tags"] for item in listed.json()["items"]] == [first_tags, first_tags]

        tiktok_grants(tiktok, canaries, [A])
        again = await open_session(client, api_key, tags={"tenant": "globex"})
        assert (await connect_through(client, again["url"])).status_code == 200
        served = await client.get(f"/tokens/{A}", headers=bearer(api_key))
        assert served.json()["tags"] == {"tenant": "globex"}
        listed = await client.get("/connections", headers=bearer(api_key))
        assert [(i["subject_id"], i["tags"]) for i in listed.json()["items"]] == [
            (A, {"tenant": "globex"}),
            (B, first_tags),  # still served by the first grant
        ]
        assert (await outcome(client, api_key, opened["id"]))["tags"] == first_tags

    async def test_an_accounts_token_carries_its_tags_also_when_refreshed_on_read(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        accounts = TikTokAccounts(tiktok, canaries, clock)
        tags = {"tenant": "acme"}
        opened = await open_session(
            client,
            api_key,
            flow="tiktok_account",
            tags=tags,
        )
        start = await start_through(client, opened["url"])
        state = query_of(start.headers["location"])["state"]
        await client.get("/callback", params={"code": "tt-code", "state": state})
        url = f"/tokens/accounts/{OPEN_ID}"
        assert (await client.get(url, headers=bearer(api_key))).json()["tags"] == tags
        clock.advance(hours=23, minutes=58)  # inside the leeway: this read refreshes
        refreshed = await client.get(url, headers=bearer(api_key))
        assert accounts.refresh.call_count == 1
        assert refreshed.json()["tags"] == tags
