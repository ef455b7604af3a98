"""GET and DELETE /tokens/{advertiser_id}: authentication, authorization, states, revocation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import APP_ID, APP_SECRET, OPEN_ID, TIKTOK_API, Canaries, bearer
from tests.helpers import (
    envelope,
    new_token,
    store_account_grant,
    store_advertiser_grant,
    until,
)
from tiktok_auth_service.models.grants import GrantStatus
from tiktok_auth_service.service import Service
from tiktok_auth_service.tokens.schemas import AdvertiserToken

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)

ADVERTISER = "7100000000000000001"
OTHER = "7100000000000000002"


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


class TestGetToken:
    async def test_serves_the_stored_token(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
        canaries: Canaries,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [ADVERTISER])
        response = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 200
        assert response.json()["access_token"] == token

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"authorization": "Bearer tas_unknownkeyunknownkeyunknownkey"},
            {"authorization": "Basic Zm9vOmJhcg=="},
        ],
    )
    async def test_missing_or_unknown_key_is_401(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection, headers: dict[str, str]
    ) -> None:
        response = await client.get(f"/tokens/{ADVERTISER}", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthenticated"

    async def test_revoked_key_is_401(
        self, client: httpx.AsyncClient, service: Service, api_key: str
    ) -> None:
        assert await service.api_keys.revoke("reporting")
        response = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 401

    async def test_key_restricted_to_other_advertisers_is_403(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        canaries: Canaries,
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER, OTHER])
        created = await service.api_keys.create("campaigns", [OTHER])
        key = created.key.get_secret_value()
        canaries.add(key)
        denied = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(key))
        assert denied.status_code == 403
        assert denied.json()["code"] == "forbidden"
        assert (await client.get(f"/tokens/{OTHER}", headers=bearer(key))).status_code == 200

    async def test_not_connected_is_404(self, client: httpx.AsyncClient, api_key: str) -> None:
        response = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 404
        assert response.json()["code"] == "not_connected"

    @pytest.mark.parametrize("status", ["revoked", "reauthorization_required"])
    async def test_dead_grant_is_409(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
        status: str,
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER], status=GrantStatus(status))
        response = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 409
        assert response.json()["code"] == "reauthorization_required"

    @pytest.mark.parametrize("bad", ["abc", "12a4", "-1", "1" * 33])
    async def test_malformed_id_is_422(
        self, client: httpx.AsyncClient, api_key: str, bad: str
    ) -> None:
        response = await client.get(f"/tokens/{bad}", headers=bearer(api_key))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"

    async def test_ciphertext_moved_to_another_row_does_not_decrypt(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
    ) -> None:
        first = await store_advertiser_grant(service, new_token(), [ADVERTISER])
        second = await store_advertiser_grant(service, new_token(), [OTHER])
        await pg.execute(
            "UPDATE oauth_grant SET access_token_enc ="
            " (SELECT access_token_enc FROM oauth_grant WHERE id = $1) WHERE id = $2",
            first,
            second,
        )
        response = await client.get(f"/tokens/{OTHER}", headers=bearer(api_key))
        assert response.status_code == 500
        assert response.json()["code"] == "token_unreadable"
        assert "access_token" not in response.text


class TestRevoke:
    async def test_revokes_at_tiktok_and_marks_every_advertiser(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
        tiktok: respx.MockRouter,
        canaries: Canaries,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [ADVERTISER, OTHER])
        revoke = tiktok.post("/oauth2/revoke_token/").respond(json=envelope({}))
        response = await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 200
        assert response.json() == {
            "advertiser_ids": [ADVERTISER, OTHER],
            "status": "revoked",
            "revoked_now": True,
        }
        assert json.loads(revoke.calls.last.request.content) == {
            "app_id": APP_ID,
            "secret": APP_SECRET,
            "access_token": token,
        }
        for advertiser_id in (ADVERTISER, OTHER):
            served = await client.get(f"/tokens/{advertiser_id}", headers=bearer(api_key))
            assert served.status_code == 409

    async def test_is_idempotent(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
        tiktok: respx.MockRouter,
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER])
        revoke = tiktok.post("/oauth2/revoke_token/").respond(json=envelope({}))
        await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        again = await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert again.status_code == 200
        assert again.json()["revoked_now"] is False
        assert revoke.call_count == 1

    async def test_token_already_dead_at_tiktok_counts_as_revoked(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
        tiktok: respx.MockRouter,
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER])
        tiktok.post("/oauth2/revoke_token/").respond(json=envelope(code=40105, message="bad"))
        response = await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 200
        assert await pg.fetchval("SELECT status FROM oauth_grant") == "revoked"

    async def test_tiktok_outage_changes_nothing(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
        tiktok: respx.MockRouter,
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER])
        tiktok.post("/oauth2/revoke_token/").respond(504, text="<html>gateway</html>")
        response = await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert response.status_code == 503
        assert response.json()["code"] == "upstream_unavailable"
        assert response.headers["retry-after"] == "30"
        assert await pg.fetchval("SELECT status FROM oauth_grant") == "active"

    async def test_unknown_advertiser_is_404_and_bad_key_401(
        self, client: httpx.AsyncClient, api_key: str, pg: asyncpg.Connection
    ) -> None:
        assert (
            await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        ).status_code == 404
        assert (await client.delete(f"/tokens/{ADVERTISER}")).status_code == 401


class TestHealth:
    async def test_probes(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}


class TestRevokeRestrictions:
    async def test_key_limited_to_part_of_a_grant_may_not_revoke_it(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        tiktok: respx.MockRouter,
        canaries: Canaries,
    ) -> None:
        await store_advertiser_grant(service, new_token(), [ADVERTISER, OTHER])
        revoke = tiktok.post("/oauth2/revoke_token/").respond(json=envelope({}))
        key = (await service.api_keys.create("one", [ADVERTISER])).key.get_secret_value()
        canaries.add(key)
        response = await client.delete(f"/tokens/{ADVERTISER}", headers=bearer(key))
        assert response.status_code == 403
        assert OTHER not in response.text
        assert not revoke.called
        assert await pg.fetchval("SELECT status FROM oauth_grant") == "active"


class TestOddInput:
    @pytest.mark.parametrize("open_id", ["%00", "a%0Ab", "a%20b"])
    async def test_control_characters_in_open_id_are_422(
        self, client: httpx.AsyncClient, api_key: str, open_id: str
    ) -> None:
        response = await client.get(f"/tokens/accounts/{open_id}", headers=bearer(api_key))
        assert response.status_code == 422

    @pytest.mark.parametrize(
        "advertiser_id",
        [
            "1' OR '1'='1",
            "1;DROP TABLE oauth_grant",
            "7100000000000000001--",
            "\u0667\u0661\u0660\u0660",  # Arabic-Indic digits: digits to Unicode, not TikTok
            "\uff17\uff11\uff10\uff10",  # full-width digits
            "1" * 33,
            "%00",
        ],
    )
    async def test_sql_looking_or_unicode_advertiser_ids_are_422(
        self,
        client: httpx.AsyncClient,
        service: Service,
        api_key: str,
        canaries: Canaries,
        advertiser_id: str,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [ADVERTISER])
        for method in ("GET", "DELETE"):
            response = await client.request(
                method, f"/tokens/{advertiser_id}", headers=bearer(api_key)
            )
            assert response.status_code == 422
            assert response.json()["code"] == "validation_error"
        served = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert served.json()["access_token"] == token

    @pytest.mark.parametrize("open_id", ["x'OR'1'='1'--", "a;DELETE%20FROM", "%25", "*", "_"])
    async def test_sql_looking_open_ids_are_simply_not_connected(
        self, client: httpx.AsyncClient, service: Service, api_key: str, open_id: str
    ) -> None:
        await store_account_grant(service, OPEN_ID, datetime.now(UTC) + timedelta(hours=20))
        response = await client.get(f"/tokens/accounts/{open_id}", headers=bearer(api_key))
        # %20 is a space: outside the open_id alphabet.
        assert response.status_code == (422 if "%20" in open_id else 404)
        served = await client.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(api_key))
        assert served.status_code == 200

    @pytest.mark.parametrize("open_id", ["zoë", "🎉", "\u202eabc", "%FF"])
    async def test_unicode_open_ids_are_422(
        self, client: httpx.AsyncClient, api_key: str, open_id: str
    ) -> None:
        response = await client.get(f"/tokens/accounts/{open_id}", headers=bearer(api_key))
        assert response.status_code == 422

    @pytest.mark.parametrize(
        "return_to",
        [
            "http://[::1",
            "https://evil.com\uff03@frontend.example",
            "https://frontend.example/\x00x",
            "https://frontend.example@evil.com/",
            "https://frontend.example.evil.com/",
            "https://frontend.example/" + "a" * 3000,
        ],
    )
    async def test_odd_return_to_is_400(
        self, client: httpx.AsyncClient, pg: asyncpg.Connection, return_to: str
    ) -> None:
        response = await client.get("/authorize", params={"return_to": return_to})
        assert response.status_code == 400
        assert response.json()["code"] == "return_to_not_allowed"


def test_token_answers_do_not_show_the_token_in_their_repr() -> None:
    token = AdvertiserToken(
        advertiser_id="7100000000000000001",
        access_token="super-secret-token-value",
        expires_at=None,
        scope=[4],
        status="active",
        last_checked_at=None,
        tags={},
        connected_by=None,
        end_user=None,
    )
    assert "super-secret-token-value" not in repr(token)
    assert "7100000000000000001" in repr(token)


async def test_a_wrong_method_names_the_allowed_ones(client: httpx.AsyncClient) -> None:
    answer = await client.put("/tokens/7100000000000000001")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == "application/problem+json"
    assert set(answer.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}


class TestTags:
    async def test_the_answer_carries_the_grants_tags_and_follows_a_change(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        api_key: str,
    ) -> None:
        grant = await store_advertiser_grant(service, new_token(), [ADVERTISER])
        url = f"/tokens/{ADVERTISER}"
        assert (await client.get(url, headers=bearer(api_key))).json()["tags"] == {}
        await pg.execute(
            """UPDATE oauth_grant SET tags = '{"tenant": "acme"}' WHERE id = $1""", grant
        )
        # The cached answer is dropped once PostgreSQL announces the change.
        await until(
            lambda: _tags_are(client, url, api_key, {"tenant": "acme"}),
            "the changed tags served",
            within=5,
        )


async def _tags_are(
    client: httpx.AsyncClient, url: str, api_key: str, tags: dict[str, str]
) -> bool:
    return bool((await client.get(url, headers=bearer(api_key))).json()["tags"] == tags)
