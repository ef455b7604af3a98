"""Security headers (api/security.py): every answer forbids framing, sniffing and Referers;
the service's pages load nothing but their own stylesheet; answers that carry a token or a
secret link are never stored by a cache. (tests/e2e/test_browser.py shows that Chromium
renders the pages and /docs under these policies without refusing anything.)"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from fastapi import FastAPI

from tests.fixtures import FRONTEND, OPEN_ID, TIKTOK_API, Canaries, bearer
from tests.helpers import (
    envelope,
    new_token,
    start_authorization,
    store_account_grant,
    store_advertiser_grant,
)
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)

A = "7100000000000000001"
HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def tiktok() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


def assert_guarded(response: httpx.Response) -> None:
    """The headers every answer carries."""
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    assert response.headers["x-content-type-options"] == "nosniff", where
    assert response.headers["x-frame-options"] == "DENY", where
    assert response.headers["referrer-policy"] == "no-referrer", where
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"], where


def assert_page_policy(response: httpx.Response) -> None:
    """A page of the service: nothing loads, only its own inline stylesheet applies."""
    assert_guarded(response)
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["base-uri"] == policy["form-action"] == "'none'"
    [style] = re.findall(r"<style>(.*?)</style>", response.text, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


async def test_every_page_a_browser_can_get_is_locked_down(
    client: httpx.AsyncClient,
    app: FastAPI,
    tiktok: respx.MockRouter,
    canaries: Canaries,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = new_token()
    canaries.add(token)
    tiktok.post("/oauth2/access_token/").respond(
        json=envelope({"access_token": token, "advertiser_ids": [A], "scope": [4]})
    )
    tiktok.get("/oauth2/advertiser/get/").respond(json=envelope({"list": []}))
    state = await start_authorization(client)
    pages = [
        # The result page, whose URL carries TikTok's code and the state.
        await client.get("/callback", params={"auth_code": "c", "state": state}, headers=HTML),
        await client.get("/callback", params={"state": "forged"}, headers=HTML),
        await client.get("/authorize", params={"return_to": "https://evil.example/"}, headers=HTML),
    ]

    async def broken(*args: object) -> None:
        raise RuntimeError("boom")

    # An unexpected error is answered outside the middleware stack: it gets them too.
    monkeypatch.setattr(app_service(app).authorization, "complete", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://broker.example") as http:
        pages.append(await http.get("/callback", params={"state": "s"}, headers=HTML))
    assert [page.status_code for page in pages] == [200, 400, 400, 500]
    for page in pages:
        assert page.headers["content-type"].startswith("text/html")
        assert_page_policy(page)


async def test_api_answers_carry_them_and_secrets_are_never_cached(
    client: httpx.AsyncClient,
    service: Service,
    tiktok: respx.MockRouter,
    canaries: Canaries,
    api_key: str,
) -> None:
    token = new_token()
    canaries.add(token)
    await store_advertiser_grant(service, token, [A])
    await store_account_grant(service, OPEN_ID, datetime.now(UTC) + timedelta(hours=20))
    tiktok.get("/oauth2/advertiser/get/").respond(
        json=envelope({"list": [{"advertiser_id": A, "advertiser_name": "A"}]})
    )
    tiktok.post("/oauth2/revoke_token/").respond(json=envelope())
    key = bearer(api_key)
    secret_answers = [
        await client.get(f"/tokens/{A}", headers=key),
        await client.get(f"/tokens/accounts/{OPEN_ID}", headers=key),
        await client.post(f"/tokens/{A}/check", headers=key),
        await client.post("/connect-sessions", json={"return_to": f"{FRONTEND}/x"}, headers=key),
        await client.post("/authorize", data={"return_to": f"{FRONTEND}/x"}),
        await client.get("/connections", headers=key),
        await client.delete(f"/tokens/{A}", headers=key),
        await client.get(f"/tokens/{A}", headers=key),  # 409 problem
        await client.get(f"/tokens/{A}"),  # 401 problem
    ]
    assert [answer.status_code for answer in secret_answers] == [
        *(200, 200, 200, 201, 303, 200, 200, 409, 401)
    ]
    for answer in secret_answers:
        assert_guarded(answer)
        assert answer.headers["cache-control"] == "no-store", answer.request.url.path
    for other in (
        await client.get("/healthz"),
        await client.get("/openapi.json"),
        await client.get("/no/such/path"),
        await client.put(f"/tokens/{A}"),
    ):
        assert_guarded(other)
        assert "default-src 'none'" in other.headers["content-security-policy"]


async def test_the_authorize_page_may_post_its_form_here_and_go_on_to_tiktok_only(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/authorize", params={"flow": "tiktok_account"})
    assert page.status_code == 200
    assert_guarded(page)
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["content-security-policy"].split(";")
    )
    # One policy, this page's own: the form posts to the service, which redirects the browser
    # to TikTok's consent page (browsers check a form's redirects against form-action too).
    assert len(page.headers.get_list("content-security-policy")) == 1
    assert policy["form-action"] == "https://broker.example https://www.tiktok.com"
    assert policy["default-src"] == policy["base-uri"] == "'none'"
    assert "script" not in page.headers["content-security-policy"]
    assert "<script" not in page.text
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path", ["/docs", "/docs/oauth2-redirect", "/redoc", "/static-offline-docs/swagger-ui.css"]
)
async def test_the_docs_may_run_their_own_scripts_from_this_origin_only(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200
    assert_guarded(answer)
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy
    # No other origin may serve them anything: the docs work offline.
    assert not re.search(r"https?:|\*", policy)
