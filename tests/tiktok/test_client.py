"""TikTokClient against a strict respx mock of TikTok: every route mocked, every route called."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.fixtures import FakeClock
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.tiktok import (
    AccessTokenExpired,
    AccessTokenInvalid,
    AdvertiserInfo,
    Endpoint,
    InvalidAuthCode,
    InvalidCredentials,
    IssuedAccountTokens,
    IssuedAdvertiserToken,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RetryPolicy,
    TikTokAuthError,
    TikTokClient,
    TikTokError,
    TikTokRateLimited,
    TikTokRequestError,
    TikTokServerError,
    TikTokTransportError,
    Verdict,
    http_client,
)
from tiktok_auth_service.tiktok.client import COOL_DOWN_SECONDS, CallBudget
from tiktok_auth_service.tiktok.errors import error_for_code

BASE = "https://business-api.tiktok.test/open_api/v1.3"
APP_ID = "7000000000000000001"
SECRET = "app-secret-5f1e2d3c4b5a69788796a5b4"
AUTH_CODE = "authcode-0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6"
ADV_TOKEN = "3f9c0d7e2b6a41c58e0f7a9d1c2b3e4f5a6b7c8d"
ACCOUNT_ACCESS = "act.account-access-9a8b7c6d5e4f"
ACCOUNT_REFRESH = "rft.account-refresh-1a2b3c4d5e6f"
REDIRECT_URI = "https://broker.example.com/callback/"
RID = "20250101120000A1B2C3D4E5F6A7B8C9D0"
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SENSITIVE = (SECRET, AUTH_CODE, ADV_TOKEN, ACCOUNT_ACCESS, ACCOUNT_REFRESH)


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.waits.append(delay)


def fail(code: int, message: str = "TikTok says no", request_id: str = RID) -> httpx.Response:
    # TikTok's errors arrive as HTTP 200; only the body code tells them apart.
    return httpx.Response(
        200, json={"code": code, "message": message, "request_id": request_id, "data": {}}
    )


# Failures after which TikTok may have acted on the request.
TRANSIENT_FAILURES = pytest.mark.parametrize(
    "failure",
    [
        fail(50000),
        fail(60001),
        httpx.Response(504, text="<html>gateway</html>"),
        httpx.ReadTimeout("timed out"),
    ],
    ids=["50000", "60001", "http-504", "read-timeout"],
)


def ok(data: Any, request_id: str = RID) -> httpx.Response:
    return httpx.Response(
        200, json={"code": 0, "message": "OK", "request_id": request_id, "data": data}
    )


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


ADVERTISER_GRANT_DATA = {
    "access_token": ADV_TOKEN,
    "advertiser_ids": ["7100000000000000001", "7100000000000000002"],
    "scope": [4, 100, 200],
}
ACCOUNT_GRANT_DATA = {
    "access_token": ACCOUNT_ACCESS,
    "token_type": "Bearer",
    "scope": "user.info.basic,video.list",
    "expires_in": 86400,
    "refresh_token": ACCOUNT_REFRESH,
    "refresh_token_expires_in": 31536000,
    "open_id": "-000EXAMPLEopenid",
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


MakeClient = Callable[..., TikTokClient]


@pytest.fixture
def make_client(http: httpx.AsyncClient, clock: FakeClock, sleeps: RecordingSleep) -> MakeClient:
    def make(
        *,
        retry: RetryPolicy | None = None,
        random: Callable[[], float] = lambda: 1.0,
        base_url: str = BASE,
        metrics: Metrics | None = None,
        budget: CallBudget | None = None,
    ) -> TikTokClient:
        return TikTokClient(
            http,
            app_id=APP_ID,
            app_secret=SecretStr(SECRET),
            api_base_url=base_url,
            clock=clock,
            retry=retry or RetryPolicy(),
            sleep=sleeps,
            random=random,
            metrics=metrics or Metrics(),
            budget=budget,
        )

    return make


@pytest.fixture
def client(make_client: MakeClient) -> TikTokClient:
    return make_client()


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
        yield router


class TestRequestShape:
    async def test_exchange_code_posts_app_credentials_and_code(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.post("/oauth2/access_token/").mock(return_value=ok(ADVERTISER_GRANT_DATA))

        await client.exchange_code(AUTH_CODE)

        request = route.calls.last.request
        assert request.headers["content-type"] == "application/json"
        assert request.url.query == b""
        assert sent_json(route) == {"app_id": APP_ID, "secret": SECRET, "auth_code": AUTH_CODE}

    async def test_get_advertisers_sends_credentials_in_query_and_token_in_header(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.get("/oauth2/advertiser/get/").mock(return_value=ok({"list": []}))

        await client.get_advertisers(SecretStr(ADV_TOKEN))

        request = route.calls.last.request
        assert dict(request.url.params) == {"app_id": APP_ID, "secret": SECRET}
        assert request.headers["Access-Token"] == ADV_TOKEN
        # TikTok ignores the OAuth-standard header; the token must be in Access-Token.
        assert "authorization" not in request.headers
        assert request.content == b""

    async def test_revoke_sends_token_in_body_and_header(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.post("/oauth2/revoke_token/").mock(return_value=ok({}))

        await client.revoke(SecretStr(ADV_TOKEN))

        assert route.calls.last.request.headers["Access-Token"] == ADV_TOKEN
        assert sent_json(route) == {"app_id": APP_ID, "secret": SECRET, "access_token": ADV_TOKEN}

    async def test_exchange_account_code_uses_oauth_names_and_auth_code_field(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.post("/tt_user/oauth2/token/").mock(return_value=ok(ACCOUNT_GRANT_DATA))

        await client.exchange_account_code(AUTH_CODE, REDIRECT_URI)

        assert sent_json(route) == {
            "client_id": APP_ID,
            "client_secret": SECRET,
            "grant_type": "authorization_code",
            "auth_code": AUTH_CODE,
            "redirect_uri": REDIRECT_URI,
        }

    async def test_refresh_account_token_body(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.post("/tt_user/oauth2/refresh_token/").mock(
            return_value=ok(ACCOUNT_GRANT_DATA)
        )

        await client.refresh_account_token(SecretStr(ACCOUNT_REFRESH))

        assert sent_json(route) == {
            "client_id": APP_ID,
            "client_secret": SECRET,
            "grant_type": "refresh_token",
            "refresh_token": ACCOUNT_REFRESH,
        }

    async def test_revoke_account_token_body(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.post("/tt_user/oauth2/revoke/").mock(return_value=ok({}))

        await client.revoke_account_token(SecretStr(ACCOUNT_ACCESS))

        assert sent_json(route) == {
            "client_id": APP_ID,
            "client_secret": SECRET,
            "access_token": ACCOUNT_ACCESS,
        }

    async def test_base_url_with_trailing_slash_keeps_single_slash_paths(
        self, make_client: MakeClient, tiktok: respx.MockRouter
    ) -> None:
        client = make_client(base_url=BASE + "/")
        route = tiktok.post("/oauth2/access_token/").mock(return_value=ok(ADVERTISER_GRANT_DATA))

        await client.exchange_code(AUTH_CODE)

        assert client.api_base_url == BASE
        assert str(route.calls.last.request.url) == BASE + "/oauth2/access_token/"


class TestSuccessParsing:
    async def test_exchange_code_returns_grant(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        tiktok.post("/oauth2/access_token/").mock(return_value=ok(ADVERTISER_GRANT_DATA))

        grant = await client.exchange_code(AUTH_CODE)

        assert grant == IssuedAdvertiserToken(
            access_token=SecretStr(ADV_TOKEN),
            advertiser_ids=["7100000000000000001", "7100000000000000002"],
            scope=[4, 100, 200],
            request_id=RID,
        )

    async def test_integer_advertiser_ids_become_exact_strings(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        # Above 2**53: a float round-trip would corrupt this id.
        data = {**ADVERTISER_GRANT_DATA, "advertiser_ids": [7100000000000000001, 42]}
        tiktok.post("/oauth2/access_token/").mock(return_value=ok(data))

        grant = await client.exchange_code(AUTH_CODE)

        assert grant.advertiser_ids == ["7100000000000000001", "42"]

    async def test_get_advertisers_returns_list(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        data = {
            "list": [
                {"advertiser_id": "7100000000000000001", "advertiser_name": "Acme Shoes"},
                {"advertiser_id": 7100000000000000002},
            ]
        }
        tiktok.get("/oauth2/advertiser/get/").mock(return_value=ok(data))

        advertisers = await client.get_advertisers(SecretStr(ADV_TOKEN))

        assert advertisers == [
            AdvertiserInfo(advertiser_id="7100000000000000001", advertiser_name="Acme Shoes"),
            AdvertiserInfo(advertiser_id="7100000000000000002", advertiser_name=""),
        ]

    @pytest.mark.parametrize("data", [{}, {"app_id": APP_ID, "advertiser_ids": ["1"]}, None])
    async def test_revoke_accepts_any_data(
        self, client: TikTokClient, tiktok: respx.MockRouter, data: Any
    ) -> None:
        tiktok.post("/oauth2/revoke_token/").mock(return_value=ok(data))

        assert await client.revoke(SecretStr(ADV_TOKEN)) is None  # type: ignore[func-returns-value]

    async def test_account_grant_expiry_anchored_when_response_arrives(
        self, client: TikTokClient, tiktok: respx.MockRouter, clock: FakeClock
    ) -> None:
        arrived = NOW + timedelta(seconds=7)

        def respond(request: httpx.Request) -> httpx.Response:
            clock.current = arrived
            return ok(ACCOUNT_GRANT_DATA)

        tiktok.post("/tt_user/oauth2/token/").mock(side_effect=respond)

        grant = await client.exchange_account_code(AUTH_CODE, REDIRECT_URI)

        assert grant == IssuedAccountTokens(
            access_token=SecretStr(ACCOUNT_ACCESS),
            refresh_token=SecretStr(ACCOUNT_REFRESH),
            open_id="-000EXAMPLEopenid",
            scope=["user.info.basic", "video.list"],
            token_type="Bearer",
            expires_at=arrived + timedelta(days=1),
            refresh_expires_at=arrived + timedelta(days=365),
            request_id=RID,
        )

    async def test_refresh_keeps_the_remaining_refresh_lifetime(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        data = {**ACCOUNT_GRANT_DATA, "refresh_token_expires_in": 31527314}
        tiktok.post("/tt_user/oauth2/refresh_token/").mock(return_value=ok(data))

        grant = await client.refresh_account_token(SecretStr(ACCOUNT_REFRESH))

        assert grant.refresh_expires_at == NOW + timedelta(seconds=31527314)
        assert grant.refresh_token.get_secret_value() == ACCOUNT_REFRESH

    async def test_reads_v1_2_account_token_shape(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        data = {
            "access_token": ACCOUNT_ACCESS,
            "token_type": "bearer",
            "scope": "user.info.basic",
            "expires": 3600,
            "refresh_token": ACCOUNT_REFRESH,
            "refresh_expires": 7200,
            "creator_id": "creator-1",
        }
        tiktok.post("/tt_user/oauth2/refresh_token/").mock(return_value=ok(data))

        grant = await client.refresh_account_token(SecretStr(ACCOUNT_REFRESH))

        assert grant.open_id == "creator-1"
        assert grant.expires_at == NOW + timedelta(hours=1)
        assert grant.refresh_expires_at == NOW + timedelta(hours=2)

    async def test_revoke_account_token_returns_none(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        tiktok.post("/tt_user/oauth2/revoke/").mock(return_value=ok({}))

        assert await client.revoke_account_token(SecretStr(ACCOUNT_ACCESS)) is None  # type: ignore[func-returns-value]


NO_RETRY = RetryPolicy(max_attempts=1)


class TestErrorMapping:
    @pytest.mark.parametrize(
        ("code", "error_class", "retryable"),
        [
            (40100, TikTokRateLimited, True),
            (40016, TikTokRateLimited, True),
            (40133, TikTokRateLimited, True),
            (50000, TikTokServerError, True),
            (50002, TikTokServerError, True),
            (51001, TikTokServerError, True),
            (51305, TikTokServerError, True),
            (59999, TikTokServerError, True),
            (60001, TikTokServerError, True),
            (40101, InvalidCredentials, False),
            (40113, InvalidCredentials, False),
            (40110, InvalidAuthCode, False),
            (40115, InvalidAuthCode, False),
            (40102, AccessTokenExpired, False),
            (40104, AccessTokenInvalid, False),
            (40105, AccessTokenInvalid, False),
            (40103, RefreshTokenExpired, False),
            (40107, RefreshTokenInvalid, False),
            (40116, TikTokAuthError, False),
            (40000, TikTokRequestError, False),
            (40001, TikTokRequestError, False),
            (40002, TikTokRequestError, False),
            (40106, TikTokRequestError, False),
            (40108, TikTokRequestError, False),
            (40014, TikTokRequestError, False),
        ],
    )
    async def test_http_200_with_nonzero_code_raises_typed_error(
        self,
        make_client: MakeClient,
        tiktok: respx.MockRouter,
        code: int,
        error_class: type[TikTokError],
        retryable: bool,
    ) -> None:
        tiktok.post("/oauth2/access_token/").mock(return_value=fail(code, "Refused."))

        with pytest.raises(TikTokError) as caught:
            await make_client(retry=NO_RETRY).exchange_code(AUTH_CODE)

        error = caught.value
        assert type(error) is error_class
        assert (error.code, error.message, error.request_id) == (code, "Refused.", RID)
        assert error.retryable is retryable

    @pytest.mark.parametrize(
        ("code", "dead"), [(40103, True), (40105, True), (40107, True), (40102, False)]
    )
    async def test_refresh_verdict_is_dead_only_for_codes_that_need_reauthorization(
        self, client: TikTokClient, tiktok: respx.MockRouter, code: int, dead: bool
    ) -> None:
        tiktok.post("/tt_user/oauth2/refresh_token/").mock(return_value=fail(code))

        with pytest.raises(TikTokAuthError) as caught:
            await client.refresh_account_token(SecretStr(ACCOUNT_REFRESH))

        assert (caught.value.verdict(Endpoint.REFRESH) == Verdict.DEAD) is dead

    @pytest.mark.parametrize(
        ("endpoint", "code", "verdict"),
        [
            (Endpoint.REFRESH, 40103, Verdict.DEAD),
            (Endpoint.REFRESH, 40107, Verdict.DEAD),
            (Endpoint.REFRESH, 40104, Verdict.TRANSIENT),
            (Endpoint.ADVERTISERS, 40104, Verdict.DEAD),
            (Endpoint.ADVERTISERS, 40105, Verdict.DEAD),
            (Endpoint.ADVERTISERS, 40107, Verdict.TRANSIENT),
            (Endpoint.ADVERTISERS, 40113, Verdict.TRANSIENT),
            (Endpoint.REVOKE, 40104, Verdict.GONE),
            (Endpoint.REVOKE, 40107, Verdict.GONE),
            (Endpoint.REVOKE, 40102, Verdict.TRANSIENT),
            (Endpoint.REVOKE, 40113, Verdict.TRANSIENT),
            (Endpoint.REVOKE, 50002, Verdict.TRANSIENT),
        ],
    )
    def test_one_verdict_per_endpoint(
        self, endpoint: Endpoint, code: int, verdict: Verdict
    ) -> None:
        assert error_for_code(code, "Refused.", RID).verdict(endpoint) == verdict

    async def test_missing_trailing_slash_404_is_not_retried(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        route = tiktok.post("/oauth2/access_token/").mock(
            return_value=httpx.Response(404, text="404 page not found")
        )

        with pytest.raises(TikTokTransportError) as caught:
            await client.exchange_code(AUTH_CODE)

        assert (caught.value.status_code, caught.value.retryable) == (404, False)
        assert route.call_count == 1

    @pytest.mark.parametrize(
        "body",
        [b"<html>oops</html>", b'{"message": "OK", "data": {}}', b"[]", b""],
        ids=["html", "no-code", "not-an-object", "empty"],
    )
    async def test_malformed_200_body_is_a_non_retryable_transport_error(
        self, client: TikTokClient, tiktok: respx.MockRouter, body: bytes
    ) -> None:
        route = tiktok.post("/oauth2/access_token/").mock(
            return_value=httpx.Response(200, content=body)
        )

        with pytest.raises(TikTokTransportError) as caught:
            await client.exchange_code(AUTH_CODE)

        assert (caught.value.status_code, caught.value.retryable) == (200, False)
        assert route.call_count == 1

    async def test_success_with_unexpected_data_keeps_request_id(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        tiktok.post("/tt_user/oauth2/token/").mock(
            return_value=ok({"access_token": ACCOUNT_ACCESS, "expires_in": "soon"})
        )

        with pytest.raises(TikTokTransportError) as caught:
            await client.exchange_account_code(AUTH_CODE, REDIRECT_URI)

        assert caught.value.request_id == RID
        assert caught.value.retryable is False
        assert "expires_in" in caught.value.message

    async def test_advertiser_list_without_list_is_an_error_not_empty(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        tiktok.get("/oauth2/advertiser/get/").mock(return_value=ok({}))

        with pytest.raises(TikTokTransportError):
            await client.get_advertisers(SecretStr(ADV_TOKEN))


RETRYABLE_FAILURES = [
    pytest.param(fail(40100), id="40100"),
    pytest.param(fail(40016), id="40016"),
    pytest.param(fail(40133), id="40133"),
    pytest.param(fail(50000), id="50000"),
    pytest.param(fail(50002), id="50002"),
    pytest.param(fail(51001), id="51001"),
    pytest.param(fail(60001), id="60001"),
    pytest.param(httpx.Response(429), id="http-429"),
    pytest.param(httpx.Response(503, text="unavailable"), id="http-503"),
    pytest.param(httpx.Response(504, html="<html>Gateway Timeout</html>"), id="http-504-html"),
    pytest.param(httpx.ReadTimeout("timed out"), id="read-timeout"),
    pytest.param(httpx.ConnectError("connection refused"), id="connect-error"),
]


class TestRetry:
    @pytest.mark.parametrize("failure", RETRYABLE_FAILURES)
    async def test_retryable_failure_then_success(
        self,
        client: TikTokClient,
        tiktok: respx.MockRouter,
        sleeps: RecordingSleep,
        failure: httpx.Response | Exception,
    ) -> None:
        route = tiktok.post("/oauth2/revoke_token/").mock(side_effect=[failure, ok({})])

        await client.revoke(SecretStr(ADV_TOKEN))

        assert route.call_count == 2
        assert sleeps.waits == [0.5]

    async def test_waits_grow_exponentially_then_last_error_is_raised(
        self, client: TikTokClient, tiktok: respx.MockRouter, sleeps: RecordingSleep
    ) -> None:
        route = tiktok.post("/oauth2/revoke_token/").mock(
            side_effect=[fail(50000), fail(50002), fail(51001), fail(40100, request_id="last")]
        )

        with pytest.raises(TikTokRateLimited) as caught:
            await client.revoke(SecretStr(ADV_TOKEN))

        assert caught.value.request_id == "last"
        assert route.call_count == 4
        assert sleeps.waits == [0.5, 1.0, 2.0]

    async def test_full_jitter_scales_each_ceiling_by_random(
        self, make_client: MakeClient, tiktok: respx.MockRouter, sleeps: RecordingSleep
    ) -> None:
        draws = iter([0.25, 0.5, 0.0])
        client = make_client(random=lambda: next(draws))
        tiktok.post("/oauth2/revoke_token/").mock(
            side_effect=[fail(50000), fail(50000), fail(50000), ok({})]
        )

        await client.revoke(SecretStr(ADV_TOKEN))

        assert sleeps.waits == [0.125, 0.5, 0.0]

    async def test_wait_is_capped_by_max_delay(
        self, make_client: MakeClient, tiktok: respx.MockRouter, sleeps: RecordingSleep
    ) -> None:
        client = make_client(retry=RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=2.5))
        tiktok.post("/oauth2/revoke_token/").mock(side_effect=[fail(50000)] * 5)

        with pytest.raises(TikTokServerError):
            await client.revoke(SecretStr(ADV_TOKEN))

        assert sleeps.waits == [1.0, 2.0, 2.5, 2.5]

    async def test_gives_up_when_next_wait_would_exceed_total_budget(
        self, make_client: MakeClient, tiktok: respx.MockRouter, sleeps: RecordingSleep
    ) -> None:
        client = make_client(retry=RetryPolicy(max_attempts=10, base_delay=0.5, max_total=1.6))
        route = tiktok.post("/oauth2/revoke_token/").mock(side_effect=[fail(50000)] * 3)

        with pytest.raises(TikTokServerError):
            await client.revoke(SecretStr(ADV_TOKEN))

        # 0.5 + 1.0 fits in 1.6; adding the next 2.0 would not.
        assert sleeps.waits == [0.5, 1.0]
        assert route.call_count == 3

    @pytest.mark.parametrize("code", [40101, 40105, 40110, 40107, 40103, 40113, 40115, 40002])
    async def test_auth_and_request_errors_are_never_retried(
        self, client: TikTokClient, tiktok: respx.MockRouter, sleeps: RecordingSleep, code: int
    ) -> None:
        route = tiktok.post("/oauth2/access_token/").mock(return_value=fail(code))

        with pytest.raises(TikTokError):
            await client.exchange_code(AUTH_CODE)

        assert route.call_count == 1
        assert sleeps.waits == []

    async def test_non_retryable_error_after_a_retry_stops_immediately(
        self, client: TikTokClient, tiktok: respx.MockRouter, sleeps: RecordingSleep
    ) -> None:
        route = tiktok.post("/oauth2/access_token/").mock(side_effect=[fail(40100), fail(40110)])

        with pytest.raises(InvalidAuthCode):
            await client.exchange_code(AUTH_CODE)

        assert route.call_count == 2
        assert sleeps.waits == [0.5]

    @TRANSIENT_FAILURES
    async def test_the_refresh_is_not_repeated_once_tiktok_may_have_acted(
        self,
        client: TikTokClient,
        tiktok: respx.MockRouter,
        sleeps: RecordingSleep,
        failure: httpx.Response | Exception,
    ) -> None:
        # A second try would present a rotated-out refresh token: 40107, a dead grant.
        route = tiktok.post("/tt_user/oauth2/refresh_token/").mock(side_effect=[failure, ok({})])
        with pytest.raises(TikTokError):
            await client.refresh_account_token(SecretStr("rft.x"))
        assert route.call_count == 1
        assert sleeps.waits == []

    @TRANSIENT_FAILURES
    @pytest.mark.parametrize(
        ("path", "data"),
        [
            ("/oauth2/access_token/", ADVERTISER_GRANT_DATA),
            ("/tt_user/oauth2/token/", ACCOUNT_GRANT_DATA),
        ],
        ids=["advertiser", "account"],
    )
    async def test_code_exchanges_are_retried_on_transient_failures(
        self,
        client: TikTokClient,
        tiktok: respx.MockRouter,
        sleeps: RecordingSleep,
        failure: httpx.Response | Exception,
        path: str,
        data: dict[str, Any],
    ) -> None:
        # A repeated exchange works or fails as the first would have: the code is spent
        # either way, so retrying can only help.
        route = tiktok.post(path).mock(side_effect=[failure, ok(data)])
        await EXCHANGES[path](client)
        assert route.call_count == 2
        assert sleeps.waits == [0.5]

    @pytest.mark.parametrize(
        "failure",
        [fail(40100), httpx.Response(429), httpx.ConnectError("refused")],
        ids=["40100", "http-429", "connect-error"],
    )
    async def test_single_use_calls_are_repeated_when_tiktok_did_not_act(
        self,
        client: TikTokClient,
        tiktok: respx.MockRouter,
        sleeps: RecordingSleep,
        failure: httpx.Response | Exception,
    ) -> None:
        route = tiktok.post("/tt_user/oauth2/refresh_token/").mock(
            side_effect=[failure, ok(ACCOUNT_GRANT_DATA)]
        )
        await client.refresh_account_token(SecretStr("rft.old"))
        assert route.call_count == 2
        assert sleeps.waits == [0.5]

    async def test_timeout_is_translated_and_chained(
        self, make_client: MakeClient, tiktok: respx.MockRouter
    ) -> None:
        tiktok.post("/oauth2/access_token/").mock(side_effect=httpx.ReadTimeout("timed out"))

        with pytest.raises(TikTokTransportError) as caught:
            await make_client(retry=NO_RETRY).exchange_code(AUTH_CODE)

        assert caught.value.retryable is True
        assert caught.value.status_code is None
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


Call = Callable[[TikTokClient], Awaitable[object]]

EXCHANGES: dict[str, Call] = {
    "/oauth2/access_token/": lambda c: c.exchange_code(AUTH_CODE),
    "/tt_user/oauth2/token/": lambda c: c.exchange_account_code(AUTH_CODE, "https://x/cb"),
}

# (method, path, call, success data, the secret the call itself sends besides the app secret)
CALLS: list[tuple[str, str, Call, Any, str]] = [
    (
        "POST",
        "/oauth2/access_token/",
        lambda c: c.exchange_code(AUTH_CODE),
        ADVERTISER_GRANT_DATA,
        AUTH_CODE,
    ),
    (
        "GET",
        "/oauth2/advertiser/get/",
        lambda c: c.get_advertisers(SecretStr(ADV_TOKEN)),
        {"list": [{"advertiser_id": "1", "advertiser_name": "A"}]},
        ADV_TOKEN,
    ),
    (
        "POST",
        "/oauth2/revoke_token/",
        lambda c: c.revoke(SecretStr(ADV_TOKEN)),
        {},
        ADV_TOKEN,
    ),
    (
        "POST",
        "/tt_user/oauth2/token/",
        lambda c: c.exchange_account_code(AUTH_CODE, REDIRECT_URI),
        ACCOUNT_GRANT_DATA,
        AUTH_CODE,
    ),
    (
        "POST",
        "/tt_user/oauth2/refresh_token/",
        lambda c: c.refresh_account_token(SecretStr(ACCOUNT_REFRESH)),
        ACCOUNT_GRANT_DATA,
        ACCOUNT_REFRESH,
    ),
    (
        "POST",
        "/tt_user/oauth2/revoke/",
        lambda c: c.revoke_account_token(SecretStr(ACCOUNT_ACCESS)),
        {},
        ACCOUNT_ACCESS,
    ),
]
CALL_IDS = [path for _, path, *_ in CALLS]


def our_log_text(caplog: pytest.LogCaptureFixture) -> str:
    # httpx's own INFO line carries the full URL (with the secret for advertiser/get); the
    # application silences that logger, so only our records are checked here.
    records = [r for r in caplog.records if r.name.startswith("tiktok_auth_service")]
    assert records, "the client logged nothing"
    return "\n".join(r.getMessage() for r in records)


def assert_no_secrets(text: str) -> None:
    leaked = [value for value in SENSITIVE if value in text]
    assert not leaked, f"leaked: {leaked}"


class TestMetrics:
    @pytest.mark.parametrize(
        ("answer", "code", "exchanges"),
        [
            (ok({"list": []}), "0", 1),
            (fail(40105), "40105", 1),
            (httpx.Response(503), "http_5xx", 4),  # retried: every exchange counts
            (httpx.Response(429), "http_429", 4),
            (httpx.Response(404), "http_4xx", 1),
            (httpx.Response(200, text="<html>maintenance</html>"), "invalid_response", 1),
            (httpx.ConnectError("refused"), "transport", 4),
        ],
        ids=["ok", "code", "5xx", "429", "4xx", "not-an-envelope", "transport"],
    )
    async def test_each_exchange_is_counted_by_endpoint_and_code(
        self,
        make_client: MakeClient,
        tiktok: respx.MockRouter,
        answer: httpx.Response | Exception,
        code: str,
        exchanges: int,
    ) -> None:
        metrics = Metrics()
        client = make_client(metrics=metrics)
        route = tiktok.get("/oauth2/advertiser/get/")
        if isinstance(answer, Exception):
            route.mock(side_effect=answer)
        else:
            route.mock(return_value=answer)
        try:
            await client.get_advertisers(SecretStr(ADV_TOKEN))
        except TikTokError:
            assert code != "0"
        labels = {"endpoint": "/oauth2/advertiser/get/", "code": code}
        sample = metrics.registry.get_sample_value
        assert sample("tiktok_auth_tiktok_calls_total", labels) == exchanges
        assert (
            sample(
                "tiktok_auth_tiktok_call_duration_seconds_count",
                {"endpoint": "/oauth2/advertiser/get/"},
            )
            == exchanges
        )


class TestLogging:
    async def test_success_logs_path_code_request_id_and_attempt(
        self, client: TikTokClient, tiktok: respx.MockRouter, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        tiktok.get("/oauth2/advertiser/get/").mock(return_value=ok({"list": []}))

        await client.get_advertisers(SecretStr(ADV_TOKEN))

        (record,) = [r for r in caplog.records if r.name.startswith("tiktok_auth_service")]
        assert record.levelno == logging.INFO
        message = record.getMessage()
        for expected in ("/oauth2/advertiser/get/", "code=0", f"request_id={RID}", "attempt=1"):
            assert expected in message
        assert "?" not in message and BASE not in message

    async def test_each_failed_attempt_is_a_warning(
        self, client: TikTokClient, tiktok: respx.MockRouter, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        tiktok.post("/oauth2/access_token/").mock(
            side_effect=[fail(40100), ok(ADVERTISER_GRANT_DATA)]
        )

        await client.exchange_code(AUTH_CODE)

        warning, info = [r for r in caplog.records if r.name.startswith("tiktok_auth_service")]
        assert warning.levelno == logging.WARNING
        assert "code=40100" in warning.getMessage() and "attempt=1" in warning.getMessage()
        assert "attempt=2" in info.getMessage()


class Budget:
    """The budget's side of the client: what was asked of it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, float | None]] = []
        self.cooled: list[float] = []

    async def acquire(self, endpoint: str, caller: str, *, within: float | None = None) -> None:
        self.asked.append((endpoint, caller, within))

    async def cool_down(self, seconds: float) -> None:
        self.cooled.append(seconds)


class TestBudget:
    async def test_every_attempt_takes_a_slot_the_first_within_its_bound(
        self, make_client: MakeClient, tiktok: respx.MockRouter
    ) -> None:
        budget = Budget()
        tiktok.get("/oauth2/advertiser/get/").mock(
            side_effect=[fail(50000), ok({"list": [{"advertiser_id": "7100000000000000001"}]})]
        )

        await make_client(budget=budget).get_advertisers(SecretStr(ADV_TOKEN), within=2)

        # The retry waits for its slot at most what the retry budget has left.
        (first, retry) = budget.asked
        assert first == ("oauth2/advertiser/get/", "worker", 2)
        assert retry[:2] == ("oauth2/advertiser/get/", "worker")
        assert retry[2] is not None and 0 < retry[2] <= RetryPolicy().max_total
        assert budget.cooled == []

    @pytest.mark.parametrize("code", [40100, 40133])
    async def test_throttling_cools_every_replica_down(
        self, make_client: MakeClient, tiktok: respx.MockRouter, code: int
    ) -> None:
        budget = Budget()
        tiktok.post("/oauth2/access_token/").mock(
            side_effect=[fail(code), ok(ADVERTISER_GRANT_DATA)]
        )

        await make_client(budget=budget).exchange_code(AUTH_CODE)

        assert budget.cooled == [COOL_DOWN_SECONDS]
        assert [endpoint for endpoint, _, _ in budget.asked] == ["oauth2/access_token/"] * 2

    async def test_other_failures_cool_nothing_down(
        self, make_client: MakeClient, tiktok: respx.MockRouter
    ) -> None:
        budget = Budget()
        tiktok.post("/oauth2/access_token/").mock(side_effect=[fail(50002), fail(40110)])

        with pytest.raises(InvalidAuthCode):
            await make_client(budget=budget).exchange_code(AUTH_CODE)

        assert budget.cooled == []
        assert len(budget.asked) == 2


class TestSecretsStayOut:
    @pytest.mark.parametrize(("method", "path", "call", "data", "own_secret"), CALLS, ids=CALL_IDS)
    async def test_success_leaks_nothing(
        self,
        client: TikTokClient,
        tiktok: respx.MockRouter,
        caplog: pytest.LogCaptureFixture,
        method: str,
        path: str,
        call: Call,
        data: Any,
        own_secret: str,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        tiktok.route(method=method, path=path).mock(return_value=ok(data))

        result = await call(client)

        assert_no_secrets(our_log_text(caplog))
        assert_no_secrets(f"{result!s} {result!r}")

    @pytest.mark.parametrize(("method", "path", "call", "data", "own_secret"), CALLS, ids=CALL_IDS)
    async def test_failure_leaks_nothing_even_if_tiktok_echoes_inputs(
        self,
        client: TikTokClient,
        tiktok: respx.MockRouter,
        caplog: pytest.LogCaptureFixture,
        method: str,
        path: str,
        call: Call,
        data: Any,
        own_secret: str,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        echo = f"bad input {own_secret} for app {SECRET}"
        tiktok.route(method=method, path=path).mock(
            side_effect=[httpx.ConnectError("refused"), fail(40100, echo), fail(40105, echo)]
        )

        with pytest.raises(TikTokError) as caught:
            await call(client)

        error = caught.value
        assert isinstance(error, AccessTokenInvalid)
        assert "***" in error.message
        assert_no_secrets(our_log_text(caplog))
        assert_no_secrets(f"{error!s} {error!r}")
        assert_no_secrets("".join(traceback.format_exception(error)))

    async def test_unexpected_data_error_does_not_quote_the_payload(
        self, client: TikTokClient, tiktok: respx.MockRouter
    ) -> None:
        # A pydantic ValidationError quotes the offending input: here, the refresh token.
        bad = {**ACCOUNT_GRANT_DATA, "refresh_token": [ACCOUNT_REFRESH]}
        tiktok.post("/tt_user/oauth2/token/").mock(return_value=ok(bad))

        with pytest.raises(TikTokTransportError) as caught:
            await client.exchange_account_code(AUTH_CODE, REDIRECT_URI)

        assert_no_secrets(f"{caught.value!s} {caught.value!r}")
        assert_no_secrets("".join(traceback.format_exception(caught.value)))


@pytest.mark.parametrize(("seconds", "connect"), [(10.0, 5.0), (0.3, 0.3)])
async def test_no_step_of_a_call_waits_longer_than_the_timeout(
    seconds: float, connect: float
) -> None:
    async with http_client(seconds, "test") as http:
        assert http.timeout == httpx.Timeout(seconds, connect=connect)
