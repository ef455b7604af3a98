"""The life of a grant end to end, against the emulator over loopback: no live token left
behind, dead advertiser tokens found by the liveness check, advertiser lists kept current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from tests.e2e.conftest import Browser, ShiftClock, api_key, issued_tokens
from tests.fixtures import Canaries, bearer
from tiktok_auth_dev.stack import Stack
from tiktok_auth_service.api.deps import app_service

A, B, C = "7100000000000000001", "7100000000000000002", "7100000000000000003"
OPEN_ID = "-000emulatoropenid0001"


async def connect(browser: Browser, *advertisers: str) -> httpx.Response:
    """Authorize exactly these advertisers at the emulator; the service's /callback answer."""
    hook = {"emulator_advertisers": ",".join(advertisers)}
    return await browser.http.get(await browser.approve_at_tiktok("approve", hook))


def live_tokens(state: dict[str, Any]) -> list[str]:
    """Tokens the emulator (TikTok) would still accept: advertiser and account ones."""
    advertiser = [t["access_token"] for t in state["advertiser_tokens"] if t["status"] == "active"]
    account = [g["refresh_token"] for g in state["account_grants"] if g["status"] == "active"]
    return advertiser + account


async def drain(stack: Stack) -> int:
    return await app_service(stack.service).worker.drain()


class TestNoLiveTokenLeftBehind:
    async def test_revoking_an_advertiser_revokes_every_token_that_still_works_for_it(
        self, start_stack: Callable[..., Any], canaries: Canaries
    ) -> None:
        async with start_stack() as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await connect(browser, A, B)  # T1 covers A and B
            await connect(browser, A)  # T2 now serves A; T1 still serves B, and works for A
            state = await issued_tokens(admin, canaries)
            assert len(live_tokens(state)) == 2

            deleted = await browser.http.delete(f"/tokens/{A}", headers=bearer(key))
            assert deleted.status_code == 200, deleted.text
            assert deleted.json() == {
                "advertiser_ids": [A, B],
                "status": "revoked",
                "revoked_now": True,
            }
            for advertiser in (A, B):
                served = await browser.http.get(f"/tokens/{advertiser}", headers=bearer(key))
                assert served.status_code == 409
                assert served.json()["code"] == "reauthorization_required"
            assert live_tokens(await issued_tokens(admin, canaries)) == []

    async def test_a_grant_left_serving_nobody_is_revoked_at_tiktok(
        self, start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection
    ) -> None:
        async with start_stack() as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await connect(browser, A, B)
            await connect(browser, A, B)  # T1 now serves nobody
            state = await issued_tokens(admin, canaries)
            old, new = state["advertiser_tokens"]
            assert (old["status"], new["status"]) == ("revoked", "active")
            served = await browser.http.get(f"/tokens/{A}", headers=bearer(key))
            assert served.json()["access_token"] == new["access_token"]
            statuses = await pg.fetch("SELECT status FROM oauth_grant ORDER BY created_at")
            assert [row["status"] for row in statuses] == ["revoked", "active"]

    async def test_the_same_token_handed_back_stays_live_with_the_new_grant(
        self, start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection
    ) -> None:
        config = {"reauthorize_returns_same_token": True}
        async with start_stack(emulator_config=config) as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await connect(browser, A)
            await connect(browser, A)
            [token] = (await issued_tokens(admin, canaries))["advertiser_tokens"]
            assert token["status"] == "active"
            assert await admin.calls("oauth2/revoke_token/") == []
            served = await browser.http.get(f"/tokens/{A}", headers=bearer(key))
            assert served.status_code == 200
            assert served.json()["access_token"] == token["access_token"]
            statuses = await pg.fetch("SELECT status FROM oauth_grant ORDER BY created_at")
            assert [row["status"] for row in statuses] == ["revoked", "active"]

    async def test_revoking_an_account_ends_its_chain_at_tiktok(
        self, start_stack: Callable[..., Any], canaries: Canaries
    ) -> None:
        async with start_stack() as (stack, browser, admin):
            key = await api_key(stack, canaries)
            assert (await browser.consent(flow="tiktok_account")).status_code == 200
            url = f"/tokens/accounts/{OPEN_ID}"
            deleted = await browser.http.delete(url, headers=bearer(key))
            assert deleted.status_code == 200, deleted.text
            assert deleted.json() == {"open_id": OPEN_ID, "status": "revoked", "revoked_now": True}
            again = await browser.http.delete(url, headers=bearer(key))
            assert again.json()["revoked_now"] is False
            assert (await browser.http.get(url, headers=bearer(key))).status_code == 409
            assert live_tokens(await issued_tokens(admin, canaries)) == []
            assert len(await admin.calls("tt_user/oauth2/revoke/")) == 1

    async def test_reauthorizing_an_account_revokes_the_replaced_chain(
        self, start_stack: Callable[..., Any], canaries: Canaries
    ) -> None:
        async with start_stack() as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await browser.consent(flow="tiktok_account")
            await browser.consent(flow="tiktok_account")
            state = await issued_tokens(admin, canaries)
            assert [g["status"] for g in state["account_grants"]] == ["revoked", "active"]
            served = await browser.http.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(key))
            newest = state["account_grants"][1]["access_tokens"][-1]["access_token"]
            assert served.json()["access_token"] == newest

    async def test_two_tabs_racing_leave_exactly_one_live_chain(
        self, start_stack: Callable[..., Any], canaries: Canaries
    ) -> None:
        async with start_stack() as (stack, browser, admin):
            key = await api_key(stack, canaries)
            # Two tabs of one browser are at TikTok's consent page, then both come back at once.
            first = await browser.approve_at_tiktok(flow="tiktok_account")
            second = await browser.approve_at_tiktok(flow="tiktok_account")
            answers = await asyncio.gather(browser.http.get(first), browser.http.get(second))
            assert [answer.status_code for answer in answers] == [200, 200]
            state = await issued_tokens(admin, canaries)
            assert len(live_tokens(state)) == 1
            served = await browser.http.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(key))
            assert served.json()["access_token"] in {
                g["access_tokens"][-1]["access_token"]
                for g in state["account_grants"]
                if g["status"] == "active"
            }


class TestLiveness:
    async def test_a_cancelled_authorization_flips_to_409_within_one_interval(
        self, start_stack: Callable[..., Any], canaries: Canaries
    ) -> None:
        clock = ShiftClock()
        async with start_stack(clock=clock, liveness_interval_seconds=60) as (
            stack,
            browser,
            admin,
        ):
            key = await api_key(stack, canaries)
            await connect(browser, A)
            [token] = (await issued_tokens(admin, canaries))["advertiser_tokens"]
            await admin.cancel(token["access_token"])
            clock.offset += timedelta(seconds=30)
            assert await drain(stack) == 0  # not due yet: still served
            assert (await browser.http.get(f"/tokens/{A}", headers=bearer(key))).status_code == 200
            clock.offset += timedelta(seconds=31)  # one interval after the grant was stored
            assert await drain(stack) == 1
            served = await browser.http.get(f"/tokens/{A}", headers=bearer(key))
            assert served.status_code == 409
            assert served.json()["code"] == "reauthorization_required"
            assert [c["code"] for c in await admin.calls("oauth2/advertiser/get/")][-1] == 40105

    async def test_added_and_removed_advertisers_follow_tiktok(
        self, start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection
    ) -> None:
        clock = ShiftClock()
        async with start_stack(clock=clock) as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await connect(browser, A, B)
            [token] = (await issued_tokens(admin, canaries))["advertiser_tokens"]
            value = token["access_token"]
            assert (await browser.http.get(f"/tokens/{C}", headers=bearer(key))).status_code == 404
            await admin.cancel(value, B)
            await admin.grant(value, C)
            clock.offset += timedelta(seconds=stack.settings.liveness_interval_seconds)
            assert await drain(stack) == 1
            status = {
                advertiser: (
                    await browser.http.get(f"/tokens/{advertiser}", headers=bearer(key))
                ).status_code
                for advertiser in (A, B, C)
            }
            assert status == {A: 200, B: 409, C: 200}
            names = dict(await pg.fetch("SELECT advertiser_id, name FROM advertiser"))
            assert names[C] == "Cobalt Bikes"
            served = (await browser.http.get(f"/tokens/{A}", headers=bearer(key))).json()
            assert served["last_checked_at"] is not None

    async def test_check_on_request_answers_409_for_a_dead_token_and_200_for_a_live_one(
        self, start_stack: Callable[..., Any], canaries: Canaries
    ) -> None:
        async with start_stack() as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await connect(browser, A)
            await connect(browser, B)
            live = await browser.http.post(f"/tokens/{B}/check", headers=bearer(key))
            assert live.status_code == 200, live.text
            assert live.json()["advertiser_id"] == B
            token_a = (await issued_tokens(admin, canaries))["advertiser_tokens"][0]
            await admin.cancel(token_a["access_token"])
            dead = await browser.http.post(f"/tokens/{A}/check", headers=bearer(key))
            assert dead.status_code == 409
            assert dead.json()["code"] == "reauthorization_required"
            assert (await browser.http.get(f"/tokens/{A}", headers=bearer(key))).status_code == 409

    async def test_transient_failures_change_nothing(
        self, start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection
    ) -> None:
        clock = ShiftClock()
        async with start_stack(clock=clock, tiktok_retry_attempts=1) as (stack, browser, admin):
            key = await api_key(stack, canaries)
            await connect(browser, A)
            await admin.fault("oauth2/advertiser/get/", {"code": 50000})
            clock.offset += timedelta(seconds=stack.settings.liveness_interval_seconds)
            assert await drain(stack) == 1
            assert (await browser.http.get(f"/tokens/{A}", headers=bearer(key))).status_code == 200
            row = await pg.fetchrow("SELECT failures, next_check_at, status FROM oauth_grant")
            assert (row["failures"], row["status"]) == (1, "active")
            assert row["next_check_at"] > clock.now()
            assert await drain(stack) == 0  # backing off
