"""The advertiser flow end to end: the service and the emulator talking real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.e2e.conftest import api_key, issued_tokens
from tests.fixtures import Canaries
from tiktok_auth_service.api.deps import app_service

ADVERTISERS = ["7100000000000000001", "7100000000000000002", "7100000000000000003"]


async def test_approve_then_serve_then_revoke(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    async with start_stack() as (stack, browser, admin):
        key = await api_key(stack, canaries)
        auth = {"authorization": f"Bearer {key}"}

        result = await browser.consent()
        assert result.status_code == 200
        state = await issued_tokens(admin, canaries)
        [issued] = state["advertiser_tokens"]
        for advertiser_id in ADVERTISERS:
            served = await browser.http.get(f"/tokens/{advertiser_id}", headers=auth)
            assert served.json()["access_token"] == issued["access_token"]
        assert len(await admin.calls("oauth2/advertiser/get/")) == 1

        revoked = await browser.http.delete(f"/tokens/{ADVERTISERS[0]}", headers=auth)
        assert revoked.json() == {
            "advertiser_ids": ADVERTISERS,
            "status": "revoked",
            "revoked_now": True,
        }
        state = await admin.state()
        assert state["advertiser_tokens"][0]["status"] == "revoked"
        after = await browser.http.get(f"/tokens/{ADVERTISERS[2]}", headers=auth)
        assert after.status_code == 409
        assert after.json()["code"] == "reauthorization_required"


async def test_denial_reaches_the_frontend_and_tiktok_is_not_called(
    start_stack: Callable[..., Any],
) -> None:
    async with start_stack() as (stack, browser, admin):
        result = await browser.consent("deny", return_to=f"{stack.service_url}/app")
        assert result.status_code == 302
        location = httpx.URL(result.headers["location"])
        assert str(location.copy_with(query=None)) == f"{stack.service_url}/app"
        back = dict(location.params)
        assert (back["status"], back["error"]) == ("error", "authorization_denied")
        # The product confirms it with the service, with the key that opened the link.
        confirmed = await browser.http.get(
            f"/connect-sessions/{back['session_id']}",
            headers={"authorization": f"Bearer {browser.api_key}"},
        )
        assert confirmed.json()["status"] == "denied"
        assert await admin.calls("oauth2/access_token/") == []


async def test_expired_code_is_refused(start_stack: Callable[..., Any]) -> None:
    async with start_stack() as (_stack, browser, admin):
        callback = await browser.approve_at_tiktok()
        await admin.advance(3601)  # TikTok's auth codes live one hour
        result = await browser.http.get(callback, headers={"accept": "text/html"})
        assert result.status_code == 400  # the person starts again; not our fault
        assert "authorization_failed" in result.text
        [call] = await admin.calls("oauth2/access_token/")
        assert call["code"] == 40110


async def test_replayed_callback_never_reaches_tiktok_twice(
    start_stack: Callable[..., Any],
) -> None:
    async with start_stack() as (_stack, browser, admin):
        callback = await browser.approve_at_tiktok()
        assert (await browser.http.get(callback)).status_code == 200
        replay = await browser.http.get(callback)
        assert replay.status_code == 400
        assert replay.json()["code"] == "invalid_state"
        assert len(await admin.calls("oauth2/access_token/")) == 1


async def test_replayed_code_with_a_fresh_state_is_refused_by_tiktok(
    start_stack: Callable[..., Any],
) -> None:
    async with start_stack() as (_stack, browser, admin):
        callback = await browser.approve_at_tiktok()
        code = httpx.URL(callback).params["auth_code"]
        assert (await browser.http.get(callback)).status_code == 200
        start = await browser.start(await browser.connect_link())
        fresh = httpx.URL(start.headers["location"])
        replay = await browser.http.get(
            "/callback", params={"auth_code": code, "state": fresh.params["state"]}
        )
        assert replay.status_code == 400
        assert replay.json()["code"] == "authorization_failed"
        assert [c["code"] for c in await admin.calls("oauth2/access_token/")] == [0, 40110]


async def test_rate_limited_exchange_succeeds_after_backoff(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    async with start_stack() as (_stack, browser, admin):
        await admin.fault("oauth2/access_token/", {"code": 40100}, {"code": 40100})
        result = await browser.consent()
        assert result.status_code == 200
        assert [c["code"] for c in await admin.calls("oauth2/access_token/")] == [40100, 40100, 0]
        await issued_tokens(admin, canaries)


async def test_advertiser_names_come_from_tiktok(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    async with start_stack() as (stack, browser, admin):
        await browser.consent()
        service = app_service(stack.service)
        async with service.db.pool.acquire() as connection:
            names = dict(await connection.fetch("SELECT advertiser_id, name FROM advertiser"))
        assert names[ADVERTISERS[0]] == "Acme Shoes"
        await issued_tokens(admin, canaries)
