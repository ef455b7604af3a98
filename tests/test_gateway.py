"""ANY /proxy/open_api/v1.3/{path}: who may call, which grant serves the call, what is forwarded
and answered, what is refused (and never sent), what is repeated, dead tokens, the records."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import respx
from fastapi import FastAPI

from tests.fixtures import OPEN_ID, TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import envelope, new_token, store_account_grant, store_advertiser_grant
from tests.secret_scan import SecretScan
from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import GrantStatus
from tiktok_auth_service.service import Service

ADVERTISER = "7100000000000000001"
SECOND = "7100000000000000002"
ELSEWHERE = "7100000000000000009"
PROXY = "/proxy/open_api/v1.3"


@dataclass(eq=False)
class FakeBudget(RateBudget):
    """Records what the service asks of the budget, and grants at once; refuses when told to."""

    acquired: list[tuple[str, str, float | None]] = field(default_factory=list)
    cooled: list[float] = field(default_factory=list)
    refuse: bool = False

    async def acquire(self, endpoint: str, caller: str, *, within: float | None = None) -> None:
        if self.refuse:
            raise errors.RateLimited(retry_after=3)
        self.acquired.append((endpoint, caller, within))

    async def cool_down(self, seconds: float) -> None:
        self.cooled.append(seconds)


@pytest.fixture
async def app(
    settings: Settings, clock: FakeClock, pg: asyncpg.Connection, leak_guard: SecretScan
) -> AsyncIterator[FastAPI]:
    def budget(db: Database) -> FakeBudget:
        return FakeBudget(db, settings.tiktok_app_id, qps=1000, qpm=60_000, metrics=Metrics())

    application = create_app(settings, clock=clock, budget=budget)
    async with application.router.lifespan_context(application):
        yield application
        leak_guard.metrics(await app_service(application).render_metrics())


@pytest.fixture
def budget(service: Service) -> FakeBudget:
    assert isinstance(service.gateway.budget, FakeBudget)
    return service.gateway.budget


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
async def token(service: Service, canaries: Canaries) -> str:
    """The real token, of a grant serving ADVERTISER and SECOND."""
    value = new_token()
    canaries.add(value)
    await store_advertiser_grant(service, value, [ADVERTISER, SECOND])
    return value


def campaigns(data: dict[str, Any] | None = None, code: int = 0) -> httpx.Response:
    body = envelope(data if data is not None else {"list": [], "page_info": {"page": 1}}, code)
    return httpx.Response(200, json=body, headers={"x-tt-logid": body["request_id"]})


async def raw_call(
    app: FastAPI,
    method: str,
    raw_path: bytes,
    headers: dict[str, str],
    chunks: list[bytes] | None = None,
) -> int:
    """A request whose target reaches the app exactly as written (httpx would normalise it),
    its body sent in `chunks`, of which the app pulls what it wants (`pulled` counts them)."""
    statuses: list[int] = []
    body = list(chunks or [b""])

    async def receive() -> dict[str, Any]:
        raw_call.pulled += 1  # type: ignore[attr-defined]
        chunk = body.pop(0) if body else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(body)}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    path, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("broker.example", 443),
    }
    raw_call.pulled = 0  # type: ignore[attr-defined]
    await app(scope, receive, send)
    return statuses[0]


class TestCallers:
    async def test_bearer_key_forwards_with_the_real_token(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.get("/campaign/get/").mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/campaign/get/",
            params={"advertiser_id": ADVERTISER, "page": "2"},
            headers={**bearer(api_key), "cookie": "session=abc", "x-forwarded-for": "10.0.0.1"},
        )
        assert response.status_code == 200, response.text
        sent = route.calls.last.request
        assert sent.headers["access-token"] == token
        assert "authorization" not in sent.headers
        assert "cookie" not in sent.headers
        assert "x-forwarded-for" not in sent.headers
        assert sent.url.query == f"advertiser_id={ADVERTISER}&page=2".encode()

    async def test_access_token_header_is_taken_as_the_key(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.get("/campaign/get/").mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/campaign/get/",
            params={"advertiser_id": ADVERTISER},
            headers={"access-token": api_key},
        )
        assert response.status_code == 200, response.text
        assert route.calls.last.request.headers.get_list("access-token") == [token]

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"authorization": "Bearer tas_unknownkeyunknownkeyunknownkey"},
            {"access-token": "tas_unknownkeyunknownkeyunknownkey"},
        ],
    )
    async def test_missing_or_unknown_key_is_401_and_nothing_is_sent(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        token: str,
        headers: dict[str, str],
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=headers
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthenticated"
        assert not route.called

    async def test_restricted_key_reaches_only_its_advertisers(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        token: str,
        canaries: Canaries,
    ) -> None:
        key = (await service.api_keys.create("only-second", [SECOND])).key.get_secret_value()
        canaries.add(key)
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/advertiser/info/",
            params={"advertiser_ids": json.dumps([SECOND, ADVERTISER])},
            headers=bearer(key),
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
        assert not route.called
        allowed = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": SECOND}, headers=bearer(key)
        )
        assert allowed.status_code == 200
        assert route.call_count == 1


class TestSelection:
    async def test_advertiser_ids_as_a_json_list_in_the_query(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.get("/advertiser/info/").mock(return_value=campaigns({"list": []}))
        response = await client.get(
            f"{PROXY}/advertiser/info/",
            params={"advertiser_ids": json.dumps([ADVERTISER, SECOND]), "fields": '["name"]'},
            headers=bearer(api_key),
        )
        assert response.status_code == 200, response.text
        assert route.calls.last.request.headers["access-token"] == token

    async def test_advertiser_id_in_a_json_body(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.post("/campaign/create/").mock(return_value=campaigns({"campaign_id": "1"}))
        body = orjson.dumps({"advertiser_id": ADVERTISER, "campaign_name": "winter"})
        response = await client.post(
            f"{PROXY}/campaign/create/",
            content=body,
            headers={**bearer(api_key), "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        sent = route.calls.last.request
        assert sent.content == body
        assert sent.headers["access-token"] == token

    async def test_advertiser_id_as_a_multipart_field_after_the_file(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.post("/file/image/ad/upload/").mock(return_value=campaigns({"id": "i"}))
        image = bytes(range(256)) * 400
        response = await client.post(
            f"{PROXY}/file/image/ad/upload/",
            files={"image_file": ("a.png", image, "image/png")},
            data={"upload_type": "UPLOAD_BY_FILE", "advertiser_id": ADVERTISER},
            headers=bearer(api_key),
        )
        assert response.status_code == 200, response.text
        sent = route.calls.last.request
        assert image in sent.content
        assert sent.headers["access-token"] == token

    async def test_business_id_selects_the_tiktok_account(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        api_key: str,
        clock: FakeClock,
    ) -> None:
        await store_account_grant(service, OPEN_ID, clock.now() + timedelta(hours=20))
        route = tiktok.get("/business/get/").mock(return_value=campaigns({"display_name": "x"}))
        response = await client.get(
            f"{PROXY}/business/get/", params={"business_id": OPEN_ID}, headers=bearer(api_key)
        )
        assert response.status_code == 200, response.text
        assert route.calls.last.request.headers["access-token"].startswith("act.")

    async def test_the_subject_header_for_endpoints_that_carry_none(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.get("/tool/language/").mock(return_value=campaigns({"languages": []}))
        response = await client.get(
            f"{PROXY}/tool/language/",
            headers={**bearer(api_key), "x-broker-advertiser-id": ADVERTISER},
        )
        assert response.status_code == 200, response.text
        sent = route.calls.last.request
        assert sent.headers["access-token"] == token
        assert "x-broker-advertiser-id" not in sent.headers

    async def test_no_subject_is_400(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(f"{PROXY}/tool/language/", headers=bearer(api_key))
        assert response.status_code == 400
        assert response.json()["code"] == "subject_required"
        assert not route.called

    async def test_subjects_of_two_grants_are_refused(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        canaries: Canaries,
    ) -> None:
        other = new_token()
        canaries.add(other)
        await store_advertiser_grant(service, other, [ELSEWHERE])
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/advertiser/info/",
            params={"advertiser_ids": json.dumps([ADVERTISER, ELSEWHERE])},
            headers=bearer(api_key),
        )
        assert response.status_code == 400
        assert response.json()["code"] == "subjects_span_grants"
        assert not route.called

    async def test_not_connected_is_404_and_reauthorization_409(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        api_key: str,
        canaries: Canaries,
    ) -> None:
        dead = new_token()
        canaries.add(dead)
        await store_advertiser_grant(
            service, dead, [ELSEWHERE], status=GrantStatus.REAUTHORIZATION_REQUIRED
        )
        route = tiktok.route().mock(return_value=campaigns())
        missing = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(api_key)
        )
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_connected"
        gone = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ELSEWHERE}, headers=bearer(api_key)
        )
        assert gone.status_code == 409
        assert gone.json()["code"] == "reauthorization_required"
        assert not route.called

    async def test_malformed_advertiser_ids_are_400(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/advertiser/info/",
            params={"advertiser_ids": ADVERTISER},
            headers=bearer(api_key),
        )
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_request"
        assert not route.called


class TestRefusedPaths:
    @pytest.mark.parametrize(
        "raw_path",
        [
            b"/proxy/open_api/v1.3/../v1.2/campaign/get/",
            b"/proxy/open_api/v1.3/campaign/../../x/",
            b"/proxy/open_api/v1.3/%2e%2e/campaign/get/",
            b"/proxy/open_api/v1.3/campaign%2fget/",
            b"/proxy/open_api/v1.3/%2E%2e%2Fx/",
            b"/proxy/open_api/v1.3//evil.example/campaign/get/",
            b"/proxy/open_api/v1.3/https://evil.example/campaign/get/",
            b"/proxy/open_api/v1.3/./campaign/get/",
            b"/proxy/open_api/v1.2/campaign/get/",
            b"/proxy/http://evil.example/open_api/v1.3/campaign/get/",
        ],
    )
    async def test_escapes_are_refused_and_nothing_is_sent(
        self, app: FastAPI, tiktok: respx.MockRouter, api_key: str, token: str, raw_path: bytes
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        status = await raw_call(
            app, "GET", raw_path + f"?advertiser_id={ADVERTISER}".encode(), bearer(api_key)
        )
        assert status in (400, 404)
        assert not route.called

    @pytest.mark.parametrize(
        "endpoint",
        ["oauth2/access_token/", "oauth2/advertiser/get/", "tt_user/oauth2/refresh_token/"],
    )
    async def test_oauth_endpoints_are_refused(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        endpoint: str,
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/{endpoint}", params={"advertiser_id": ADVERTISER}, headers=bearer(api_key)
        )
        assert response.status_code == 403
        assert response.json()["code"] == "endpoint_refused"
        assert not route.called


class TestAnswers:
    async def test_tiktoks_answer_byte_for_byte_with_its_code_and_request_id(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        body = b'{"code": 40002,  "message":"bad", "request_id":"2026120700000000AA","data":{}}'
        tiktok.get("/campaign/get/").mock(
            return_value=httpx.Response(
                200,
                content=body,
                headers={
                    "content-type": "application/json",
                    "set-cookie": "tt=1",
                    "x-tt-logid": "2026120700000000AA",
                },
            )
        )
        response = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(api_key)
        )
        assert response.status_code == 200
        assert response.content == body
        assert response.headers["x-tiktok-code"] == "40002"
        assert response.headers["x-tiktok-request-id"] == "2026120700000000AA"
        assert "set-cookie" not in response.headers
        assert response.headers["x-request-id"]

    async def test_tiktoks_cookies_from_one_call_are_not_sent_on_the_next(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        canaries: Canaries,
    ) -> None:
        other = (await service.api_keys.create("other", [])).key.get_secret_value()
        canaries.add(other)
        answer = campaigns()
        answer.headers["set-cookie"] = "tt_session=from-the-first-caller; Path=/"
        route = tiktok.get("/campaign/get/").mock(side_effect=[answer, campaigns()])
        for key in (api_key, other):
            response = await client.get(
                f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(key)
            )
            assert response.status_code == 200
        assert route.call_count == 2
        assert "cookie" not in route.calls.last.request.headers

    async def test_a_large_answer_streams_whole_and_its_code_is_read_from_its_start(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        rows = [{"metrics": {"spend": str(i)}, "dimensions": {"day": "x"}} for i in range(9000)]
        body = orjson.dumps(
            {"code": 0, "message": "OK", "request_id": "2026REPORT", "data": {"list": rows}}
        )
        assert len(body) > 256 * 1024
        tiktok.get("/report/integrated/get/").mock(
            return_value=httpx.Response(
                200, content=body, headers={"content-type": "application/json"}
            )
        )
        response = await client.get(
            f"{PROXY}/report/integrated/get/",
            params={"advertiser_id": ADVERTISER, "report_type": "BASIC"},
            headers=bearer(api_key),
        )
        assert response.content == body
        assert response.headers["x-tiktok-code"] == "0"
        assert response.headers["x-tiktok-request-id"] == "2026REPORT"

    async def test_a_body_over_the_limit_is_413_and_nothing_is_sent(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        settings: Settings,
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.post(
            f"{PROXY}/file/image/ad/upload/",
            params={"advertiser_id": ADVERTISER},
            content=b"x" * (settings.gateway_max_request_bytes + 1),
            headers=bearer(api_key),
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert not route.called

    async def test_a_large_body_is_read_only_for_a_valid_key(
        self, app: FastAPI, tiktok: respx.MockRouter, token: str, settings: Settings
    ) -> None:
        route = tiktok.route().mock(return_value=campaigns())
        chunk = b"x" * 65_536
        status = await raw_call(
            app,
            "POST",
            f"{PROXY}/file/image/ad/upload/?advertiser_id={ADVERTISER}".encode(),
            {"access-token": "tas_unknownkeyunknownkeyunknownkey"},
            [chunk] * 100,
        )
        assert status == 401
        assert raw_call.pulled * len(chunk) <= settings.max_body_bytes + len(chunk)  # type: ignore[attr-defined]
        assert not route.called


class TestRetries:
    async def test_a_throttled_get_is_repeated_after_a_cool_down(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        budget: FakeBudget,
    ) -> None:
        route = tiktok.get("/campaign/get/").mock(side_effect=[campaigns(code=40100), campaigns()])
        response = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(api_key)
        )
        assert response.headers["x-tiktok-code"] == "0"
        assert route.call_count == 2
        assert [endpoint for endpoint, _, _ in budget.acquired] == ["campaign/get/"] * 2
        assert budget.acquired[0][1] == "reporting"
        assert budget.cooled == [1.0]

    @pytest.mark.parametrize(
        "failure",
        [
            httpx.Response(502, text="<html>bad gateway</html>"),
            campaigns(code=50000),
            httpx.ReadTimeout("slow"),
        ],
    )
    async def test_a_get_is_repeated_after_server_errors_and_timeouts(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        failure: httpx.Response | Exception,
    ) -> None:
        route = tiktok.get("/campaign/get/").mock(side_effect=[failure, campaigns()])
        response = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(api_key)
        )
        assert response.status_code == 200
        assert response.headers["x-tiktok-code"] == "0"
        assert route.call_count == 2

    async def test_a_create_answered_502_is_not_repeated(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.post("/campaign/create/").mock(
            side_effect=[httpx.Response(502, text="<html>bad gateway</html>"), campaigns()]
        )
        response = await client.post(
            f"{PROXY}/campaign/create/",
            json={"advertiser_id": ADVERTISER, "campaign_name": "x"},
            headers=bearer(api_key),
        )
        assert response.status_code == 502
        assert response.text == "<html>bad gateway</html>"
        assert route.call_count == 1

    async def test_a_create_that_timed_out_is_not_repeated(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.post("/campaign/create/").mock(
            side_effect=[httpx.ReadTimeout("slow"), campaigns()]
        )
        response = await client.post(
            f"{PROXY}/campaign/create/",
            json={"advertiser_id": ADVERTISER, "campaign_name": "x"},
            headers=bearer(api_key),
        )
        assert response.status_code == 503
        assert response.json()["code"] == "upstream_unavailable"
        assert route.call_count == 1

    @pytest.mark.parametrize(
        "first", [campaigns(code=40100), campaigns(code=40133), httpx.ConnectError("refused")]
    )
    async def test_a_create_turned_away_before_acting_is_sent_again(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        first: httpx.Response | Exception,
    ) -> None:
        route = tiktok.post("/campaign/create/").mock(
            side_effect=[first, campaigns({"campaign_id": "1"})]
        )
        response = await client.post(
            f"{PROXY}/campaign/create/",
            json={"advertiser_id": ADVERTISER, "campaign_name": "x"},
            headers=bearer(api_key),
        )
        assert response.headers["x-tiktok-code"] == "0"
        assert route.call_count == 2

    async def test_a_create_refused_by_tiktok_is_passed_on_not_repeated(
        self, client: httpx.AsyncClient, tiktok: respx.MockRouter, api_key: str, token: str
    ) -> None:
        route = tiktok.post("/campaign/create/").mock(return_value=campaigns(code=40002))
        response = await client.post(
            f"{PROXY}/campaign/create/",
            json={"advertiser_id": ADVERTISER},
            headers=bearer(api_key),
        )
        assert response.headers["x-tiktok-code"] == "40002"
        assert route.call_count == 1

    async def test_no_budget_slot_in_time_is_429_and_nothing_is_sent(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        budget: FakeBudget,
    ) -> None:
        budget.refuse = True
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(api_key)
        )
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.json()["code"] == "rate_limited"
        assert not route.called

    async def test_the_budget_wait_is_bounded_by_the_callers_deadline(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        budget: FakeBudget,
    ) -> None:
        tiktok.get("/campaign/get/").mock(return_value=campaigns())
        await client.get(
            f"{PROXY}/campaign/get/",
            params={"advertiser_id": ADVERTISER},
            headers={**bearer(api_key), "x-broker-timeout": "2.5"},
        )
        [(_, _, within)] = budget.acquired
        assert within is not None and 0 < within <= 2.5


class TestDeadTokens:
    async def test_a_revoked_token_is_checked_once_then_calls_and_reads_get_409(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        pg: asyncpg.Connection,
    ) -> None:
        calls = tiktok.get("/campaign/get/").mock(return_value=campaigns(code=40105))
        check = tiktok.get("/oauth2/advertiser/get/").mock(
            return_value=httpx.Response(200, json=envelope(code=40105))
        )
        results = await asyncio.gather(
            *(
                client.get(
                    f"{PROXY}/campaign/get/",
                    params={"advertiser_id": ADVERTISER},
                    headers=bearer(api_key),
                )
                for _ in range(3)
            )
        )
        assert [r.headers["x-tiktok-code"] for r in results] == ["40105"] * 3
        assert check.call_count == 1
        status = await pg.fetchval("SELECT status FROM oauth_grant")
        assert status == GrantStatus.REAUTHORIZATION_REQUIRED
        after = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": SECOND}, headers=bearer(api_key)
        )
        assert after.status_code == 409
        read = await client.get(f"/tokens/{ADVERTISER}", headers=bearer(api_key))
        assert read.status_code == 409
        assert calls.call_count == 3
        assert check.call_count == 1

    async def test_checks_of_one_grant_are_bounded_per_minute(
        self,
        client: httpx.AsyncClient,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        settings: Settings,
    ) -> None:
        tiktok.get("/campaign/get/").mock(return_value=campaigns(code=40105))
        # TikTok refuses the data call but the check finds the token alive (a flapping edge).
        check = tiktok.get("/oauth2/advertiser/get/").mock(
            return_value=httpx.Response(
                200,
                json=envelope(
                    {
                        "list": [
                            {"advertiser_id": ADVERTISER, "advertiser_name": "one"},
                            {"advertiser_id": SECOND, "advertiser_name": "two"},
                        ]
                    }
                ),
            )
        )
        for _ in range(settings.gateway_dead_token_checks_per_minute + 3):
            await client.get(
                f"{PROXY}/campaign/get/",
                params={"advertiser_id": ADVERTISER},
                headers=bearer(api_key),
            )
        assert check.call_count == settings.gateway_dead_token_checks_per_minute


class TestRecords:
    async def test_each_call_is_audited_counted_and_logged_without_secrets(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        api_key: str,
        token: str,
        pg: asyncpg.Connection,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        tiktok.get("/campaign/get/").mock(return_value=campaigns())
        with caplog.at_level("DEBUG"):
            response = await client.get(
                f"{PROXY}/campaign/get/",
                params={"advertiser_id": ADVERTISER},
                headers={"access-token": api_key, "x-request-id": "req-gateway-1"},
            )
        assert response.status_code == 200
        await service.audit.flush()
        row = await pg.fetchrow(
            "SELECT caller, action, subject, outcome, request_id, tiktok_request_id,"
            " duration_ms FROM token_access"
        )
        duration_ms = row["duration_ms"]
        assert dict(row) == {
            "caller": "reporting",
            "action": "proxy GET campaign/get/",
            "subject": ADVERTISER,
            "outcome": "0",
            "request_id": "req-gateway-1",
            "tiktok_request_id": response.headers["x-tiktok-request-id"],
            "duration_ms": duration_ms,
        }
        assert duration_ms is not None and duration_ms >= 0
        [line] = [
            r
            for r in caplog.records
            if r.name.startswith("tiktok_auth_service") and r.levelname != "DEBUG"
        ]
        assert getattr(line, "event", None) == "gateway_call"
        assert line.api_key_name == "reporting"  # type: ignore[attr-defined]
        assert line.endpoint == "campaign/get/"  # type: ignore[attr-defined]
        assert line.tiktok_request_id == response.headers["x-tiktok-request-id"]  # type: ignore[attr-defined]
        assert line.duration_ms >= 0  # type: ignore[attr-defined]
        metrics = (await service.render_metrics()).decode()
        assert 'tiktok_auth_gateway_calls_total{code="0",endpoint="campaign/get/"} 1.0' in metrics

    async def test_a_refused_call_is_audited_with_its_duration_and_no_tiktok_request_id(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: respx.MockRouter,
        token: str,
        canaries: Canaries,
        pg: asyncpg.Connection,
    ) -> None:
        key = (await service.api_keys.create("only-second", [SECOND])).key.get_secret_value()
        canaries.add(key)
        route = tiktok.route().mock(return_value=campaigns())
        response = await client.get(
            f"{PROXY}/campaign/get/", params={"advertiser_id": ADVERTISER}, headers=bearer(key)
        )
        assert response.status_code == 403
        assert not route.called
        await service.audit.flush()
        row = await pg.fetchrow(
            "SELECT action, outcome, tiktok_request_id, duration_ms FROM token_access"
        )
        assert (row["action"], row["outcome"]) == ("proxy GET campaign/get/", "forbidden")
        assert row["tiktok_request_id"] is None
        assert row["duration_ms"] is not None and row["duration_ms"] >= 0
