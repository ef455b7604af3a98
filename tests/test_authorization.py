"""The browser leg: /authorize and /callback against TikTok faked by respx."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import (
    APP_ID,
    APP_SECRET,
    FRONTEND,
    REDIRECT_URI,
    TIKTOK_API,
    TIKTOK_AUTH,
    Canaries,
    FakeClock,
)
from tests.helpers import (
    envelope,
    new_token,
    query_of,
    start_authorization,
    start_through,
    the_form,
)
from tiktok_auth_service.authorization import binding_id
from tiktok_auth_service.authorization import service as authorization_service
from tiktok_auth_service.crypto import digest, same_secret
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)

ADVERTISERS = ["7100000000000000001", "7100000000000000002"]

# Where an attacker would like the browser (with its outcome) to land. Browsers read `\` as
# `/` in http(s) URLs, so the backslash forms are other hosts too.
HOSTILE_RETURN_TO = [
    "https://evil.example/x",
    "https://frontend.example.evil.com/",
    "http://frontend.example/",  # right host, wrong scheme: another origin
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)//https://frontend.example/",
    "data:text/html,<script>alert(1)</script>",
    "/relative",
    "//evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "https:\\\\evil.example/",
    "https://evil.example\\@frontend.example/",
    "https://frontend.example\\@evil.example/",
]


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


def grant_token(tiktok: respx.MockRouter, canaries: Canaries, token: str | None = None) -> str:
    token = token or new_token()
    canaries.add(token)
    tiktok.post("/oauth2/access_token/").respond(
        json=envelope({"access_token": token, "advertiser_ids": ADVERTISERS, "scope": [4, 100]})
    )
    tiktok.get("/oauth2/advertiser/get/").respond(
        json=envelope(
            {
                "list": [
                    {"advertiser_id": ADVERTISERS[0], "advertiser_name": "Acme Shoes"},
                    {"advertiser_id": ADVERTISERS[1], "advertiser_name": "Acme Hats"},
                ]
            }
        )
    )
    return token


class TestAuthorize:
    async def test_redirects_to_tiktok_with_state_and_cookie(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await start_through(client, "/authorize")
        assert response.status_code == 303
        location = response.headers["location"]
        assert location.startswith(TIKTOK_AUTH + "?")
        query = query_of(location)
        assert query["app_id"] == APP_ID
        assert query["redirect_uri"] == REDIRECT_URI
        assert len(query["state"]) >= 43  # 256 bits, base64url
        cookie = response.headers["set-cookie"]
        # __Host-: only this exact host can set it, so a sibling subdomain cannot plant one.
        assert cookie.startswith(f"__Host-tas_binding.{binding_id(query['state'])}=")
        for attribute in ("httponly", "samesite=lax", "secure", "path=/"):
            assert attribute in cookie.lower()
        assert "domain=" not in cookie.lower()

    async def test_opening_authorize_writes_nothing_until_the_person_continues(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        return_to = f"{FRONTEND}/done?x=1"
        await client.head("/authorize", params={"return_to": return_to})
        for _ in range(20):
            page = await client.get("/authorize", params={"return_to": return_to})
            assert page.status_code == 200
        assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 0
        assert "set-cookie" not in page.headers
        assert page.headers["content-type"].startswith("text/html")
        method, action, fields = the_form(page)
        assert (method, action) == ("post", "https://broker.example/authorize")
        assert fields == {"flow": "advertiser", "return_to": return_to}
        started = await client.post(action, data=fields)
        assert started.status_code == 303
        assert started.headers["cache-control"] == "no-store"
        assert await pg.fetchval("SELECT return_to FROM oauth_state") == return_to

    async def test_a_form_with_an_unknown_flow_is_refused(self, client: httpx.AsyncClient) -> None:
        answer = await client.post("/authorize", data={"flow": "everything"})
        assert answer.status_code == 422
        assert answer.json()["code"] == "validation_error"
        hostile = await client.post("/authorize", data={"return_to": "https://evil.example/"})
        assert hostile.json()["code"] == "return_to_not_allowed"

    async def test_state_is_stored_hashed(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection
    ) -> None:
        state = await start_authorization(client)
        rows = await pg.fetch(
            "SELECT state_hash::text AS h, browser_hash::text AS b FROM oauth_state"
        )
        assert len(rows) == 1
        assert state not in rows[0]["h"] and state.encode().hex() not in rows[0]["h"]

    @pytest.mark.parametrize("bad", HOSTILE_RETURN_TO)
    async def test_return_to_outside_allow_list_is_rejected(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection, bad: str
    ) -> None:
        response = await client.get("/authorize", params={"return_to": bad})
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "return_to_not_allowed"
        assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 0

    async def test_browser_gets_a_page_for_a_bad_return_to(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/authorize",
            params={"return_to": "https://evil.example/"},
            headers={"accept": "text/html,application/xhtml+xml"},
        )
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "return_to_not_allowed" in response.text


class TestCallback:
    async def test_happy_path_serves_the_issued_token_for_every_advertiser(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        token = grant_token(tiktok, canaries)
        state = await start_authorization(client, return_to=f"{FRONTEND}/done?x=1")
        response = await client.get(
            "/callback", params={"auth_code": "the-code", "code": "the-code", "state": state}
        )
        assert response.status_code == 302
        assert response.headers["location"] == (
            f"{FRONTEND}/done?x=1&status=connected&advertiser_ids="
            f"{ADVERTISERS[0]}%2C{ADVERTISERS[1]}"
        )
        exchange = tiktok.routes[0].calls.last.request
        assert json.loads(exchange.content) == {
            "app_id": APP_ID,
            "secret": APP_SECRET,
            "auth_code": "the-code",
        }
        for advertiser_id in ADVERTISERS:
            served = await client.get(
                f"/tokens/{advertiser_id}", headers={"authorization": f"Bearer {api_key}"}
            )
            assert served.status_code == 200
            assert served.headers["cache-control"] == "no-store"
            assert served.json() == {
                "advertiser_id": advertiser_id,
                "access_token": token,
                "expires_at": None,
                "scope": [4, 100],
                "status": "active",
                "last_checked_at": "2026-11-24T12:00:00+00:00",
                "connected_by": None,
                "end_user": None,
                "tags": {},
            }
        names = dict(await pg.fetch("SELECT advertiser_id, name FROM advertiser"))
        assert names == {ADVERTISERS[0]: "Acme Shoes", ADVERTISERS[1]: "Acme Hats"}

    async def test_without_return_to_shows_a_result_page(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries
    ) -> None:
        grant_token(tiktok, canaries)
        state = await start_authorization(client)
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert ADVERTISERS[0] in response.text and ADVERTISERS[1] in response.text

    async def test_falls_back_to_code_when_auth_code_is_absent(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries
    ) -> None:
        grant_token(tiktok, canaries)
        state = await start_authorization(client)
        response = await client.get("/callback", params={"code": "only-code", "state": state})
        assert response.status_code == 200
        assert json.loads(tiktok.routes[0].calls.last.request.content)["auth_code"] == "only-code"

    async def test_the_plaintext_token_is_in_no_column(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        pg: asyncpg.Connection,
    ) -> None:
        token = grant_token(tiktok, canaries)
        state = await start_authorization(client)
        await client.get("/callback", params={"auth_code": "c", "state": state})
        for table in ("oauth_grant", "advertiser", "oauth_state", "api_client"):
            rows = await pg.fetch(f"SELECT t::text AS row FROM {table} AS t")  # noqa: S608
            for row in rows:
                assert token not in row["row"]
                assert token.encode().hex() not in row["row"]
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 1

    async def test_replayed_callback_does_not_exchange_twice(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries
    ) -> None:
        grant_token(tiktok, canaries)
        state = await start_authorization(client)
        params = {"auth_code": "c", "state": state}
        assert (await client.get("/callback", params=params)).status_code == 200
        replay = await client.get("/callback", params=params)
        assert replay.status_code == 400
        assert replay.json()["code"] == "invalid_state"
        assert tiktok.routes[0].call_count == 1

    @pytest.mark.parametrize("state", [None, "", "never-issued"])
    async def test_unknown_or_missing_state_never_calls_tiktok(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, state: str | None
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        params = {"auth_code": "c"} | ({"state": state} if state is not None else {})
        response = await client.get("/callback", params=params)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        assert not exchange.called

    async def test_expired_state_is_rejected(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, clock: FakeClock
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        state = await start_authorization(client)
        clock.advance(seconds=601)
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 400
        assert "expired" in response.json()["detail"]
        assert not exchange.called

    async def test_state_from_another_browser_is_rejected(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, app: object
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        state = await start_authorization(client)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="https://broker.example"
        ) as other:
            response = await other.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 400
        assert "another browser" in response.json()["detail"]
        assert not exchange.called
        # The rightful browser can still finish.
        tiktok.get("/oauth2/advertiser/get/").respond(json=envelope({"list": []}))
        exchange.respond(
            json=envelope({"access_token": new_token(), "advertiser_ids": ["1"], "scope": []})
        )
        ok = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert ok.status_code == 200

    async def test_denial_is_reported_without_calling_tiktok(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        state = await start_authorization(client, return_to=f"{FRONTEND}/done")
        response = await client.get(
            "/callback",
            params={
                "error": "access_denied",
                "error_description": "User cancelled",
                "state": state,
            },
        )
        assert response.status_code == 302
        assert response.headers["location"] == (
            f"{FRONTEND}/done?status=error&error=authorization_denied"
        )
        assert not exchange.called

    async def test_an_error_with_a_code_is_a_denial_and_the_code_is_never_exchanged(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, pg: asyncpg.Connection
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        state = await start_authorization(client, return_to=f"{FRONTEND}/done")
        params = {"error": "access_denied", "auth_code": "c", "code": "c", "state": state}
        response = await client.get("/callback", params=params)
        assert response.headers["location"] == (
            f"{FRONTEND}/done?status=error&error=authorization_denied"
        )
        assert not exchange.called
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0

    @pytest.mark.parametrize(
        "query",
        [
            "state=" + "s" * 60_000 + "&auth_code=c",
            "auth_code=" + "c" * 60_000 + "&state=x",
            "state=%zz%&auth_code=%E0%A4%A&&=&%00=%00",
            "state=%F0%9F%92%A9%FF%FE&code=%00",
            "state[]=a&state[]=b&state=' OR '1'='1&auth_code=c",
        ],
        ids=["huge-state", "huge-code", "bad-escapes", "bad-utf8", "sql"],
    )
    async def test_oversized_or_garbage_callback_queries_are_an_invalid_state(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, query: str
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        response = await client.get(f"/callback?{query}")
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_state"
        assert not exchange.called

    async def test_a_forged_or_oversized_binding_cookie_is_another_browser(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Each binding is compared in constant time (crypto.same_secret), as its digest.
        compared: list[bytes] = []

        def spy(a: bytes, b: bytes) -> bool:
            compared.append(a)
            return same_secret(a, b)

        monkeypatch.setattr(authorization_service, "same_secret", spy)
        exchange = tiktok.post("/oauth2/access_token/")
        state = await start_authorization(client)
        forgeries = ["x" * 43, "b" * 20_000]
        for forged in forgeries:
            client.cookies.set(f"__Host-tas_binding.{binding_id(state)}", forged)
            response = await client.get("/callback", params={"auth_code": "c", "state": state})
            assert response.status_code == 400
            assert "another browser" in response.json()["detail"]
        assert not exchange.called
        assert compared == [digest(forged) for forged in forgeries]

    async def test_a_planted_binding_cookie_is_not_adopted(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter
    ) -> None:
        # Over plain http a sibling host can set cookies for this one: whatever the browser
        # already has, the binding of a new authorization is minted here, fresh.
        exchange = tiktok.post("/oauth2/access_token/")
        planted = "p" * 43
        for name in ("__Host-tas_binding", "tas_binding"):
            client.cookies.set(name, planted, domain="broker.example")
        response = await start_through(client, "/authorize")
        assert response.status_code == 303
        [set_cookie] = response.headers.get_list("set-cookie")
        name, _, rest = set_cookie.partition("=")
        minted = rest.split(";")[0]
        assert len(minted) >= 43 and minted != planted
        state = query_of(response.headers["location"])["state"]
        client.cookies.clear()
        for cookie in (f"{name}={planted}", f"__Host-tas_binding={planted}"):
            callback = await client.get(
                "/callback", params={"auth_code": "c", "state": state}, headers={"cookie": cookie}
            )
            assert callback.status_code == 400
            assert "another browser" in callback.json()["detail"]
        assert not exchange.called

    async def test_two_authorizations_in_one_browser_both_complete(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries
    ) -> None:
        grant_token(tiktok, canaries)
        first = await start_authorization(client)
        second = await start_authorization(client)
        for state in (second, first):
            response = await client.get("/callback", params={"auth_code": "c", "state": state})
            assert response.status_code == 200, response.text
        # Each callback dropped its own binding cookie.
        assert [cookie.name for cookie in client.cookies.jar] == []

    async def test_outcome_keys_in_return_to_are_replaced_not_repeated(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter
    ) -> None:
        seeded = f"{FRONTEND}/done?status=connected&open_id=attacker&keep=1&error=x"
        state = await start_authorization(client, return_to=seeded)
        response = await client.get("/callback", params={"error": "access_denied", "state": state})
        assert response.headers["location"] == (
            f"{FRONTEND}/done?keep=1&status=error&error=authorization_denied"
        )

    @pytest.mark.parametrize("connected", [True, False])
    async def test_a_fragment_in_return_to_never_reaches_the_redirect(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        connected: bool,
    ) -> None:
        # A page reading its outcome from location.hash must not be fed a made-up one.
        grant_token(tiktok, canaries)
        forged = "#status=connected&advertiser_ids=999"
        state = await start_authorization(client, return_to=f"{FRONTEND}/done?keep=1{forged}")
        params = {"auth_code": "c"} if connected else {"error": "access_denied"}
        response = await client.get("/callback", params={**params, "state": state})
        location = response.headers["location"]
        assert "#" not in location and "999" not in location
        assert location.startswith(f"{FRONTEND}/done?keep=1&status=")

    async def test_the_error_parameter_cannot_forge_log_lines(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        state = await start_authorization(client)
        forged = "access_denied\n2026-12-01 INFO tiktok_auth_service grant revoked"
        with caplog.at_level(logging.INFO, logger="tiktok_auth_service"):
            await client.get("/callback", params={"error": forged, "state": state})
        messages = [record.getMessage() for record in caplog.records]
        assert any("access_denied" in message for message in messages)
        assert not any("\n" in message for message in messages)

    async def test_a_transient_exchange_failure_is_retried(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries
    ) -> None:
        token = new_token()
        canaries.add(token)
        exchange = tiktok.post("/oauth2/access_token/").mock(
            side_effect=[
                httpx.Response(200, json=envelope(code=50000, message="busy")),
                httpx.Response(
                    200,
                    json=envelope({"access_token": token, "advertiser_ids": ADVERTISERS}),
                ),
            ]
        )
        tiktok.get("/oauth2/advertiser/get/").respond(json=envelope({"list": []}))
        state = await start_authorization(client, return_to=f"{FRONTEND}/done")
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert query_of(response.headers["location"])["status"] == "connected"
        assert exchange.call_count == 2

    async def test_missing_code_without_return_to_is_a_readable_page(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter
    ) -> None:
        exchange = tiktok.post("/oauth2/access_token/")
        state = await start_authorization(client)
        response = await client.get(
            "/callback", params={"state": state}, headers={"accept": "text/html"}
        )
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert "authorization_denied" in response.text
        assert not exchange.called

    @pytest.mark.parametrize(
        ("tiktok_code", "expected"),
        [
            (40110, "authorization_failed"),
            (40115, "authorization_failed"),
            (40101, "app_credentials_rejected"),
            (40113, "app_credentials_rejected"),
            (50000, "upstream_unavailable"),
        ],
    )
    async def test_refused_exchange_is_reported_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        pg: asyncpg.Connection,
        tiktok_code: int,
        expected: str,
    ) -> None:
        tiktok.post("/oauth2/access_token/").respond(
            json=envelope(code=tiktok_code, message="refused")
        )
        state = await start_authorization(client, return_to=f"{FRONTEND}/done")
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 302
        assert query_of(response.headers["location"]) == {"status": "error", "error": expected}
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0

    async def test_rate_limited_exchange_succeeds_after_retry(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, canaries: Canaries
    ) -> None:
        token = new_token()
        canaries.add(token)
        tiktok.post("/oauth2/access_token/").mock(
            side_effect=[
                httpx.Response(200, json=envelope(code=40100, message="Too many requests")),
                httpx.Response(
                    200,
                    json=envelope(
                        {"access_token": token, "advertiser_ids": ADVERTISERS, "scope": [4]}
                    ),
                ),
            ]
        )
        tiktok.get("/oauth2/advertiser/get/").respond(json=envelope({"list": []}))
        state = await start_authorization(client)
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 200
        assert tiktok.routes[0].call_count == 2

    async def test_failed_name_lookup_keeps_the_grant(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
    ) -> None:
        token = new_token()
        canaries.add(token)
        tiktok.post("/oauth2/access_token/").respond(
            json=envelope({"access_token": token, "advertiser_ids": ADVERTISERS, "scope": [4]})
        )
        names = tiktok.get("/oauth2/advertiser/get/").respond(503, text="<html>busy</html>")
        state = await start_authorization(client)
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 200
        assert names.called
        served = await client.get(
            f"/tokens/{ADVERTISERS[1]}", headers={"authorization": f"Bearer {api_key}"}
        )
        assert served.json()["access_token"] == token

    async def test_a_token_that_could_not_be_stored_is_revoked(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        service: Service,
        pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        token = grant_token(tiktok, canaries)
        revoke = tiktok.post("/oauth2/revoke_token/").respond(json=envelope())

        async def database_gone(*args: object) -> None:
            raise ConnectionResetError("the database went away")

        flow = service.authorization.flows[Flow.ADVERTISER]
        monkeypatch.setattr(flow, "store", database_gone)
        state = await start_authorization(client)
        response = await client.get("/callback", params={"auth_code": "c", "state": state})
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"
        assert json.loads(revoke.calls.last.request.content)["access_token"] == token
        assert await pg.fetchval("SELECT count(*) FROM oauth_grant") == 0

    async def test_reauthorization_moves_advertisers_to_the_new_grant(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        canaries: Canaries,
        api_key: str,
    ) -> None:
        grant_token(tiktok, canaries)
        state = await start_authorization(client)
        await client.get("/callback", params={"auth_code": "c1", "state": state})
        newer = new_token()
        canaries.add(newer)
        tiktok.routes[0].respond(
            json=envelope({"access_token": newer, "advertiser_ids": [ADVERTISERS[0]], "scope": [4]})
        )
        state = await start_authorization(client)
        await client.get("/callback", params={"auth_code": "c2", "state": state})
        auth = {"authorization": f"Bearer {api_key}"}
        assert (await client.get(f"/tokens/{ADVERTISERS[0]}", headers=auth)).json()[
            "access_token"
        ] == newer
        assert (await client.get(f"/tokens/{ADVERTISERS[1]}", headers=auth)).json()[
            "access_token"
        ] != newer


async def test_anonymous_states_are_dropped_once_they_expire(
    client: httpx.AsyncClient, clock: FakeClock, pg: asyncpg.Connection
) -> None:
    # Without connect sessions anyone may start authorizations: what they leave behind must
    # not outlive STATE_TTL_SECONDS.
    for _ in range(30):
        await start_authorization(client)
    assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 30
    old = await start_authorization(client)
    clock.advance(seconds=601)
    await start_authorization(client)
    assert await pg.fetchval("SELECT count(*) FROM oauth_state") == 1
    response = await client.get("/callback", params={"auth_code": "c", "state": old})
    assert response.json()["code"] == "invalid_state"
    assert "expired" in response.json()["detail"]
