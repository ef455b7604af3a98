"""GET /connections against the real PostgreSQL: what a key may read, filtered and paged,
never a token."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import (
    TikTokAccounts,
    connect_account,
    envelope,
    new_token,
    store_account_grant,
    store_advertiser_grant,
)
from tiktok_auth_service.connections.service import encode_cursor
from tiktok_auth_service.models.grants import AdvertiserStatus, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)

A1, A2, A3, A4 = (f"710000000000000000{n}" for n in range(1, 5))
ACCOUNT_1, ACCOUNT_2 = "-000conn-account-1", "-000conn-account-2"


async def list_all(client: httpx.AsyncClient, key: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/connections", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["next"] is None, "the test data fits one page"
    items: list[dict[str, Any]] = body["items"]
    return items


async def stored_tokens(service: Service, pg: asyncpg.Connection) -> list[str]:
    """Every access and refresh token stored, opened with the service's keys."""
    tokens = []
    for row in await pg.fetch("SELECT id FROM oauth_grant"):
        async with service.db.session() as session:
            grant = await Repository(session).lock_grant(row["id"])
            assert grant is not None
            tokens.append(
                service.sealer.open_access_token(grant.id, grant.key_id, grant.access_token_enc)
            )
            if grant.refresh_token_enc is not None:
                tokens.append(
                    service.sealer.open_refresh_token(
                        grant.id, grant.key_id, grant.refresh_token_enc
                    ).get_secret_value()
                )
    return tokens


@pytest.fixture
async def connected(service: Service, pg: asyncpg.Connection) -> dict[str, uuid.UUID]:
    """A1 (named), A2 and A3 (TikTok no longer lists it) on one grant, opened through a
    connect session; A4 on a revoked grant; two TikTok accounts."""
    now = datetime.now(UTC)
    serving = await store_advertiser_grant(service, "token-" + uuid.uuid4().hex, [A1, A2, A3])
    revoked = await store_advertiser_grant(
        service, "token-" + uuid.uuid4().hex, [A4], status=GrantStatus.REVOKED
    )
    async with service.db.session() as session, session.begin():
        repo = Repository(session)
        await repo.set_advertiser_names(serving, {A1: "Shoes Ltd"}, now)
        await repo.set_advertiser_status(serving, [A3], AdvertiserStatus.REMOVED, now)
    await pg.execute(
        "UPDATE oauth_grant SET connected_by = 'onboarding', end_user = 'user-42' WHERE id = $1",
        serving,
    )
    account_1 = await store_account_grant(service, ACCOUNT_1, now + timedelta(hours=24))
    account_2 = await store_account_grant(service, ACCOUNT_2, now + timedelta(hours=24))
    return {"serving": serving, "revoked": revoked, "account_1": account_1, "account_2": account_2}


class TestListing:
    async def test_an_unrestricted_key_sees_everything_connected_and_no_token(
        self,
        client: httpx.AsyncClient,
        service: Service,
        api_key: str,
        connected: dict[str, uuid.UUID],
        pg: asyncpg.Connection,
    ) -> None:
        response = await client.get("/connections", headers=bearer(api_key))
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [(i["flow"], i["subject_id"], i["status"]) for i in items] == [
            ("advertiser", A1, "active"),
            ("advertiser", A2, "active"),
            ("advertiser", A3, "reauthorization_required"),  # TikTok no longer lists it
            ("advertiser", A4, "revoked"),
            ("tiktok_account", ACCOUNT_1, "active"),
            ("tiktok_account", ACCOUNT_2, "active"),
        ]
        first, account = items[0], items[4]
        assert first["name"] == "Shoes Ltd" and items[1]["name"] is None
        assert first["scope"] == [4] and first["expires_at"] is None
        assert (first["connected_by"], first["end_user"]) == ("onboarding", "user-42")
        assert items[3]["connected_by"] is None
        assert account["name"] is None and account["scope"] == ["user.info.basic"]
        stored = await pg.fetchrow(
            "SELECT expires_at, refresh_expires_at, created_at FROM oauth_grant WHERE id = $1",
            connected["account_1"],
        )
        assert datetime.fromisoformat(account["expires_at"]) == stored["expires_at"]
        assert datetime.fromisoformat(account["refresh_expires_at"]) == stored["refresh_expires_at"]
        assert datetime.fromisoformat(account["created_at"]) == stored["created_at"]
        assert {key for item in items for key in item} == {
            "flow",
            "subject_id",
            "status",
            "name",
            "scope",
            "expires_at",
            "refresh_expires_at",
            "last_checked_at",
            "created_at",
            "updated_at",
            "connected_by",
            "end_user",
            "tags",
            "last_failure",
            "next_attempt_at",
        }
        tokens = await stored_tokens(service, pg)
        assert len(tokens) == 6  # two advertiser tokens, two account pairs
        assert not [token for token in tokens if token in response.text]

    async def test_filters_by_status_and_flow(
        self, client: httpx.AsyncClient, api_key: str, connected: dict[str, uuid.UUID]
    ) -> None:
        def subjects(items: list[dict[str, Any]]) -> list[str]:
            return [item["subject_id"] for item in items]

        assert subjects(await list_all(client, api_key, flow="tiktok_account")) == [
            ACCOUNT_1,
            ACCOUNT_2,
        ]
        assert subjects(await list_all(client, api_key, flow="advertiser", status="active")) == [
            A1,
            A2,
        ]
        assert subjects(await list_all(client, api_key, status="reauthorization_required")) == [A3]
        assert subjects(await list_all(client, api_key, status="revoked")) == [A4]
        assert await list_all(client, api_key, flow="tiktok_account", status="revoked") == []

    async def test_a_restricted_key_sees_only_its_own_subjects(
        self,
        client: httpx.AsyncClient,
        service: Service,
        connected: dict[str, uuid.UUID],
        canaries: Canaries,
    ) -> None:
        # A2 and ACCOUNT_2 exist but are not its own; 7100000000000000099 is its own but not
        # connected.
        narrow = await service.api_keys.create(
            "narrow", [A1, A4, "7100000000000000099"], [ACCOUNT_1]
        )
        advertisers_only = await service.api_keys.create("advertisers-only", [A2])
        keys = [narrow.key.get_secret_value(), advertisers_only.key.get_secret_value()]
        canaries.add(*keys)
        items = await list_all(client, keys[0])
        assert [(i["flow"], i["subject_id"]) for i in items] == [
            ("advertiser", A1),
            ("advertiser", A4),
            ("tiktok_account", ACCOUNT_1),
        ]
        assert [i["subject_id"] for i in await list_all(client, keys[1])] == [A2]
        assert await list_all(client, keys[1], flow="tiktok_account") == []

    async def test_a_key_with_nothing_connected_gets_an_empty_page(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        response = await client.get("/connections", headers=bearer(api_key))
        assert response.status_code == 200
        assert response.json() == {"items": [], "next": None}


class TestPagination:
    async def test_pages_cover_every_connection_once_in_order(
        self, client: httpx.AsyncClient, service: Service, api_key: str, pg: asyncpg.Connection
    ) -> None:
        advertisers = [f"7200000000000{n:06d}" for n in range(23)]
        for start in range(0, len(advertisers), 5):
            await store_advertiser_grant(service, uuid.uuid4().hex, advertisers[start : start + 5])
        accounts = [f"-000page{n:02d}" for n in range(7)]
        for open_id in accounts:
            await store_account_grant(service, open_id, datetime.now(UTC) + timedelta(hours=24))
        everything = [("advertiser", a) for a in advertisers] + [
            ("tiktok_account", o) for o in accounts
        ]

        for limit, params in ((4, {}), (10, {"flow": "advertiser"}), (30, {})):
            expected = [s for s in everything if params.get("flow") in (None, s[0])]
            seen: list[tuple[str, str]] = []
            cursor = None
            pages = 0
            while True:
                query: dict[str, Any] = {"limit": limit, **params}
                if cursor is not None:
                    query["next"] = cursor
                response = await client.get("/connections", params=query, headers=bearer(api_key))
                assert response.status_code == 200, response.text
                body = response.json()
                assert 0 < len(body["items"]) <= limit
                seen += [(i["flow"], i["subject_id"]) for i in body["items"]]
                pages += 1
                cursor = body["next"]
                if cursor is None:
                    break
            assert seen == expected, (limit, params)  # no duplicates, no gaps, stable order
            assert pages == -(-len(expected) // limit)  # and no empty last page

    async def test_restricted_and_filtered_pages_cover_exactly_what_the_key_may_see(
        self,
        client: httpx.AsyncClient,
        service: Service,
        pg: asyncpg.Connection,
        canaries: Canaries,
    ) -> None:
        """Small pages across the boundary of the two flows, with each filter, for a key
        restricted to some subjects: every page is cut after the filters apply."""
        advertisers = [f"7400000000000{n:06d}" for n in range(30)]
        now = datetime.now(UTC)
        for start in range(0, 30, 6):
            status = GrantStatus.REVOKED if start == 12 else GrantStatus.ACTIVE
            grant = await store_advertiser_grant(
                service, uuid.uuid4().hex, advertisers[start : start + 6], status=status
            )
            async with service.db.session() as session, session.begin():
                await Repository(session).set_advertiser_status(
                    grant, [advertisers[start]], AdvertiserStatus.REMOVED, now
                )
        accounts = [f"-000filter{n:02d}" for n in range(8)]
        for open_id in accounts:
            await store_account_grant(service, open_id, now + timedelta(hours=24))
        allowed_advertisers = [*advertisers[::2], "7400000000000999999"]
        allowed_accounts = accounts[1::2]
        created = await service.api_keys.create("filtered", allowed_advertisers, allowed_accounts)
        key = created.key.get_secret_value()
        canaries.add(key)

        def status_of(n: int) -> str:
            if n % 6 == 0:
                return "reauthorization_required"
            return "revoked" if 12 <= n < 18 else "active"

        visible = [("advertiser", a, status_of(n)) for n, a in enumerate(advertisers)]
        visible = [v for v in visible if v[1] in allowed_advertisers]
        visible += [("tiktok_account", o, "active") for o in allowed_accounts]
        for limit, params in (
            (3, {}),
            (2, {"status": "active"}),
            (4, {"status": "revoked"}),
            (1, {"flow": "tiktok_account"}),
            (5, {"flow": "advertiser", "status": "reauthorization_required"}),
        ):
            expected = [
                (flow, subject)
                for flow, subject, status in visible
                if params.get("flow") in (None, flow) and params.get("status") in (None, status)
            ]
            seen: list[tuple[str, str]] = []
            cursor = None
            while True:
                query: dict[str, Any] = {"limit": limit, **params}
                if cursor is not None:
                    query["next"] = cursor
                response = await client.get("/connections", params=query, headers=bearer(key))
                assert response.status_code == 200, response.text
                body = response.json()
                seen += [(i["flow"], i["subject_id"]) for i in body["items"]]
                cursor = body["next"]
                if cursor is None:
                    break
            assert seen == expected, (limit, params)

    async def test_the_default_page_is_a_hundred(
        self, client: httpx.AsyncClient, service: Service, api_key: str, pg: asyncpg.Connection
    ) -> None:
        advertisers = [f"7300000000000{n:06d}" for n in range(101)]
        await store_advertiser_grant(service, uuid.uuid4().hex, advertisers)
        first = (await client.get("/connections", headers=bearer(api_key))).json()
        assert len(first["items"]) == 100 and first["next"] is not None
        rest = await client.get(
            "/connections", params={"next": first["next"]}, headers=bearer(api_key)
        )
        assert [i["subject_id"] for i in rest.json()["items"]] == [advertisers[-1]]
        assert rest.json()["next"] is None


class TestErrors:
    @pytest.mark.parametrize(
        "params",
        [
            {"next": "not a cursor!"},
            {"next": base64.urlsafe_b64encode(b"garbage").decode()},
            {"next": base64.urlsafe_b64encode(json.dumps(["nope", "x"]).encode()).decode()},
            {"next": base64.urlsafe_b64encode(json.dumps(["advertiser", 7]).encode()).decode()},
            {"next": base64.urlsafe_b64encode(json.dumps({"a": 1}).encode()).decode()},
            {"next": ""},
            {"limit": "0"},
            {"limit": "501"},
            {"status": "lost"},
            {"flow": "instagram"},
            {"status": "active' OR '1'='1"},
            {"flow": "advertiser'; DROP TABLE oauth_grant; --"},
            {"limit": "1 OR 1=1"},
        ],
    )
    async def test_malformed_parameters_are_422_problems(
        self, client: httpx.AsyncClient, api_key: str, params: dict[str, str]
    ) -> None:
        response = await client.get("/connections", params=params, headers=bearer(api_key))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"

    async def test_a_cursor_it_made_is_accepted(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        cursor = encode_cursor("tiktok_account", "-000zzz")
        response = await client.get(
            "/connections", params={"next": cursor}, headers=bearer(api_key)
        )
        assert response.status_code == 200 and response.json() == {"items": [], "next": None}

    async def test_a_cursor_carrying_sql_or_unicode_is_only_a_position(
        self, client: httpx.AsyncClient, api_key: str, service: Service, canaries: Canaries
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, ["7100000000000000009"])
        for subject in ("' OR '1'='1", "x') OR TRUE; --", "zoë🎉\u202e"):
            # A position among the accounts, after every advertiser: an injected condition
            # would bring the advertiser back.
            cursor = encode_cursor("tiktok_account", subject)
            response = await client.get(
                "/connections", params={"next": cursor}, headers=bearer(api_key)
            )
            assert response.status_code == 200
            assert response.json() == {"items": [], "next": None}

    async def test_without_a_valid_key_it_is_401(
        self, client: httpx.AsyncClient, service: Service, api_key: str
    ) -> None:
        await service.api_keys.revoke("reporting")
        for headers in ({}, bearer("tas_unknown-key-0123456789abcdef"), bearer(api_key)):
            response = await client.get("/connections", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["code"] == "unauthenticated"
            assert response.headers["www-authenticate"] == "Bearer"


def subjects_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["subject_id"] for item in items]


class TestTagFilter:
    @pytest.fixture
    async def tagged(self, connected: dict[str, uuid.UUID], pg: asyncpg.Connection) -> None:
        for grant, tags in (
            ("serving", {"tenant": "acme", "env": "prod", "url": "https://a.example:8443/x"}),
            ("revoked", {"tenant": "acme", "env": "staging"}),
            ("account_1", {"tenant": "acme", "env": "prod"}),
            ("account_2", {"tenant": "globex"}),
        ):
            await pg.execute(
                "UPDATE oauth_grant SET tags = $1::jsonb WHERE id = $2",
                json.dumps(tags),
                connected[grant],
            )

    async def test_every_tag_given_must_match(
        self, client: httpx.AsyncClient, api_key: str, tagged: None
    ) -> None:
        items = await list_all(client, api_key)
        assert items[0]["tags"] == {
            "tenant": "acme",
            "env": "prod",
            "url": "https://a.example:8443/x",
        }
        acme = await list_all(client, api_key, tag="tenant:acme")
        assert subjects_of(acme) == [A1, A2, A3, A4, ACCOUNT_1]
        both = await list_all(client, api_key, tag=["tenant:acme", "env:prod"])
        assert subjects_of(both) == [A1, A2, A3, ACCOUNT_1]
        assert subjects_of(await list_all(client, api_key, tag="tenant:globex")) == [ACCOUNT_2]
        assert await list_all(client, api_key, tag=["tenant:globex", "env:prod"]) == []
        assert await list_all(client, api_key, tag="tenant:ACME") == []  # values are exact
        # Split at the first colon: the value may hold more.
        by_url = await list_all(client, api_key, tag="url:https://a.example:8443/x")
        assert subjects_of(by_url) == [A1, A2, A3]
        active = await list_all(client, api_key, tag="env:prod", status="active", flow="advertiser")
        assert subjects_of(active) == [A1, A2]

    async def test_a_tag_filter_pages_like_any_other(
        self, client: httpx.AsyncClient, api_key: str, tagged: None
    ) -> None:
        seen, cursor = [], None
        while True:
            params: dict[str, Any] = {"tag": "tenant:acme", "limit": 2}
            if cursor is not None:
                params["next"] = cursor
            body = (await client.get("/connections", params=params, headers=bearer(api_key))).json()
            seen += subjects_of(body["items"])
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == [A1, A2, A3, A4, ACCOUNT_1]

    async def test_a_restricted_key_filters_among_its_own(
        self, client: httpx.AsyncClient, service: Service, tagged: None, canaries: Canaries
    ) -> None:
        created = await service.api_keys.create("partner", [A2, A4], open_ids=[ACCOUNT_2])
        key = created.key.get_secret_value()
        canaries.add(key)
        assert subjects_of(await list_all(client, key, tag="tenant:acme")) == [A2, A4]
        assert subjects_of(await list_all(client, key, tag="tenant:globex")) == [ACCOUNT_2]

    @pytest.mark.parametrize(
        "tag", ["tenant", "", ":acme", "k" * 65 + ":v", "tenant:" + "v" * 256, "tenant\x00:x"]
    )
    async def test_a_malformed_tag_filter_is_a_422(
        self, client: httpx.AsyncClient, api_key: str, tag: str
    ) -> None:
        response = await client.get("/connections", params={"tag": tag}, headers=bearer(api_key))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"
        assert "tag" in response.json()["detail"]

    async def test_one_key_asked_with_two_values_is_a_422(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        response = await client.get(
            "/connections",
            params={"tag": ["tenant:acme", "tenant:globex"]},
            headers=bearer(api_key),
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == "tag: 'tenant' is asked with two values."
        same = {"tag": ["tenant:acme", "tenant:acme"]}
        assert (await client.get("/connections", params=same, headers=bearer(api_key))).is_success


def failing(code: int, message: str) -> httpx.Response:
    return httpx.Response(200, json=envelope(code=code, message=message))


def at(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class TestHealth:
    """Each item says what went wrong since its last success, and when the worker tries
    again; `healthy=false` lists the connections that are not served or last failed."""

    async def test_a_transient_refresh_failure_shows_until_the_refresh_succeeds(
        self,
        client: httpx.AsyncClient,
        service: Service,
        api_key: str,
        clock: FakeClock,
        canaries: Canaries,
        pg: asyncpg.Connection,
    ) -> None:
        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            accounts = TikTokAccounts(mock, canaries, clock)
            await connect_account(client)
            [fresh] = await list_all(client, api_key)
            assert fresh["last_failure"] is None
            due = await pg.fetchval("SELECT refresh_due_at FROM oauth_grant")
            assert at(fresh["next_attempt_at"]) == due
            assert subjects_of(await list_all(client, api_key, healthy="true")) == [OPEN_ID]
            assert await list_all(client, api_key, healthy="false") == []

            busy = "Service is busy, please retry later."
            accounts.refresh.mock(side_effect=None, return_value=failing(50002, busy))
            clock.advance(hours=23, minutes=50)
            assert await service.worker.drain() == 1
            [failed] = await list_all(client, api_key)
            first_failure = clock.now()
            assert failed["status"] == "active"
            assert failed["last_failure"] == {
                "at": failed["last_failure"]["at"],
                "tiktok_code": 50002,
                "message": busy,
                "attempts": 1,
            }
            assert at(failed["last_failure"]["at"]) == first_failure
            assert at(failed["next_attempt_at"]) == first_failure + timedelta(seconds=30)
            assert subjects_of(await list_all(client, api_key, healthy="false")) == [OPEN_ID]
            assert await list_all(client, api_key, healthy="true") == []

            clock.advance(seconds=31)
            assert await service.worker.drain() == 1
            [again] = await list_all(client, api_key)
            assert again["last_failure"]["attempts"] == 2
            assert at(again["last_failure"]["at"]) == clock.now()
            assert at(again["next_attempt_at"]) == clock.now() + timedelta(seconds=60)

            accounts.refresh.mock(side_effect=accounts.issue)
            clock.advance(seconds=61)
            assert await service.worker.drain() == 1
            [recovered] = await list_all(client, api_key)
            assert recovered["last_failure"] is None
            due = await pg.fetchval("SELECT refresh_due_at FROM oauth_grant")
            assert at(recovered["next_attempt_at"]) == due > clock.now()
            assert await list_all(client, api_key, healthy="false") == []

    async def test_a_terminal_refresh_failure_stays_with_no_next_attempt(
        self,
        client: httpx.AsyncClient,
        api_key: str,
        clock: FakeClock,
        canaries: Canaries,
    ) -> None:
        with respx.mock(base_url=TIKTOK_API, assert_all_called=False) as mock:
            accounts = TikTokAccounts(mock, canaries, clock)
            await connect_account(client)
            accounts.refresh.mock(
                side_effect=None,
                return_value=failing(40107, "The refresh_token is invalid or expired."),
            )
            clock.advance(hours=23, minutes=58)
            url = f"/tokens/accounts/{OPEN_ID}"
            assert (await client.get(url, headers=bearer(api_key))).status_code == 409
        [dead] = await list_all(client, api_key, healthy="false")
        assert dead["status"] == "reauthorization_required"
        assert dead["last_failure"]["tiktok_code"] == 40107
        assert dead["last_failure"]["message"] == "The refresh_token is invalid or expired."
        assert dead["last_failure"]["attempts"] == 1
        assert dead["next_attempt_at"] is None

    async def test_a_failed_liveness_check_shows_on_every_advertiser_of_the_grant(
        self,
        client: httpx.AsyncClient,
        service: Service,
        api_key: str,
        clock: FakeClock,
        canaries: Canaries,
    ) -> None:
        token = new_token()
        canaries.add(token)
        await store_advertiser_grant(service, token, [A1, A2])
        with respx.mock(base_url=TIKTOK_API, assert_all_called=True) as mock:
            advertisers = mock.get("/oauth2/advertiser/get/")
            advertisers.respond(json=envelope(code=50000, message="Internal error."))
            check = await client.post(f"/tokens/{A1}/check", headers=bearer(api_key))
            assert check.status_code == 503
            items = await list_all(client, api_key)
            failure = {"tiktok_code": 50000, "message": "Internal error.", "attempts": 1}
            assert [item["last_failure"] for item in items] == [
                {"at": items[0]["last_failure"]["at"], **failure}
            ] * 2
            assert at(items[0]["last_failure"]["at"]) == clock.now()
            assert [at(item["next_attempt_at"]) for item in items] == [
                clock.now() + timedelta(seconds=30)
            ] * 2
            assert subjects_of(await list_all(client, api_key, healthy="false")) == [A1, A2]

            listed = [{"advertiser_id": a, "advertiser_name": a} for a in (A1, A2)]
            advertisers.respond(json=envelope({"list": listed}))
            clock.advance(seconds=5)
            assert (await client.post(f"/tokens/{A1}/check", headers=bearer(api_key))).is_success
        items = await list_all(client, api_key)
        assert [item["last_failure"] for item in items] == [None, None]
        interval = timedelta(seconds=service.settings.liveness_interval_seconds)
        assert [at(item["next_attempt_at"]) for item in items] == [clock.now() + interval] * 2
        assert subjects_of(await list_all(client, api_key, healthy="true")) == [A1, A2]

    async def test_revoked_and_reauthorization_required_are_unhealthy(
        self, client: httpx.AsyncClient, api_key: str, connected: dict[str, uuid.UUID]
    ) -> None:
        unhealthy = await list_all(client, api_key, healthy="false")
        assert subjects_of(unhealthy) == [A3, A4]
        # A3's grant is still checked (TikTok may list it again); A4's grant is revoked.
        assert [item["next_attempt_at"] is None for item in unhealthy] == [False, True]
        healthy = await list_all(client, api_key, healthy="true")
        assert subjects_of(healthy) == [A1, A2, ACCOUNT_1, ACCOUNT_2]


async def test_the_filters_are_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    parameters = {p["name"]: p for p in spec["paths"]["/connections"]["get"]["parameters"]}
    assert parameters["tag"]["schema"]["type"] == "array"
    assert parameters["healthy"]["schema"]["anyOf"][0]["type"] == "boolean"
    item = spec["components"]["schemas"]["Connection"]["properties"]
    assert {"tags", "last_failure", "next_attempt_at"} <= set(item)
