"""A refresh never stalls a read, never loops, never loses a rotated token: against the
emulator over loopback, with TikTok hanging, short token lifetimes and a PostgreSQL restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from tests.db_proxy import restartable_database
from tests.e2e.conftest import (
    EmulatorAdmin,
    ShiftClock,
    api_key,
    issued_tokens,
    seed_account_grants,
)
from tests.fixtures import KEYS, Canaries, bearer
from tiktok_auth_dev.stack import run_stack
from tiktok_auth_service.api.deps import app_service

REFRESH = "tt_user/oauth2/refresh_token/"

# The stored tokens as a day later, a minute before they expire: the next read refreshes.
AGE_TOKENS = (
    "UPDATE oauth_grant SET refreshed_at = now() - interval '1 day',"
    " expires_at = now() + interval '1 minute'"
)


def accounts(count: int) -> tuple[list[str], dict[str, Any]]:
    open_ids = [f"-000acct{n:05d}" for n in range(count)]
    emulator = {
        "accounts": [{"open_id": o, "display_name": o} for o in open_ids],
        "qps": 0,
        "qpm": 0,
        "qpd": 0,
    }
    return open_ids, emulator


async def leases_released(connection: asyncpg.Connection, deadline: float) -> None:
    """Wait (bounded) until no refresh lease is held: every flight has written its answer."""
    while await connection.fetchval("SELECT count(*) FROM oauth_grant WHERE lease_until > now()"):
        assert time.monotonic() < deadline, "refreshes did not land"
        await asyncio.sleep(0.05)


async def test_reads_and_authorize_stay_fast_while_tiktok_hangs(
    start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection
) -> None:
    open_ids, emulator = accounts(30)
    # TikTok's calls may take ten minutes here: a read or /authorize that waited on one could
    # not finish inside the 60 s guard below, whatever the machine's load.
    async with start_stack(
        emulator_config=emulator, database_pool_size=5, tiktok_timeout_seconds=600
    ) as (stack, browser, admin):
        key = await api_key(stack, canaries)
        await seed_account_grants(stack, open_ids)
        await pg.execute(AGE_TOKENS)
        await admin.fault(REFRESH, *[{"hang": True}] * len(open_ids))

        stored = {
            grant["open_id"]: grant["access_tokens"][-1]["access_token"]
            for grant in (await issued_tokens(admin, canaries))["account_grants"]
        }

        async def read(open_id: str) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            response = await browser.http.get(f"/tokens/accounts/{open_id}", headers=bearer(key))
            return response, time.monotonic() - started

        async with asyncio.timeout(60):
            reads = await asyncio.gather(*(read(open_id) for open_id in open_ids))
            await admin.wait_hanging(len(open_ids))  # every refresh is still stuck at TikTok
            started = time.monotonic()
            authorize = await browser.start(await browser.connect_link())
            authorize_seconds = time.monotonic() - started
        await admin.release()
        await leases_released(pg, time.monotonic() + 30)

        wait = stack.settings.refresh_wait_seconds
        assert [response.status_code for response, _ in reads] == [200] * len(open_ids)
        # Each read was answered with the stored, still valid token, not TikTok's answer.
        assert {r.json()["open_id"]: r.json()["access_token"] for r, _ in reads} == stored
        slowest = max(seconds for _, seconds in reads)
        assert authorize.status_code == 303, authorize.text
        calls = await admin.calls(REFRESH)
        await issued_tokens(admin, canaries)
        assert len(calls) == len(open_ids)  # one refresh per grant, no retry storm
        print(
            f"\n30 reads while TikTok hung: slowest {slowest:.2f} s (REFRESH_WAIT_SECONDS "
            f"{wait}); /authorize meanwhile {authorize_seconds * 1000:.0f} ms"
        )


async def test_short_lifetimes_never_make_the_worker_loop(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    """With expires_in 600 (shorter than leeway + ahead = 900 s) each grant is refreshed at
    half its lifetime, not on every pass."""
    clock = ShiftClock()
    open_ids, emulator = accounts(5)
    emulator["access_token_ttl"] = 600
    async with start_stack(clock=clock, emulator_config=emulator) as (stack, browser, admin):
        key = await api_key(stack, canaries)
        await seed_account_grants(stack, open_ids)
        service = app_service(stack.service)
        per_minute: list[int] = []
        for minute in range(10):
            before = len(await admin.calls(REFRESH))
            for _ in range(6):  # a worker pass and a read of every account each 10 s
                await advance(clock, admin, timedelta(seconds=10))
                await service.worker.drain()
                for open_id in open_ids:
                    served = await browser.http.get(
                        f"/tokens/accounts/{open_id}", headers=bearer(key)
                    )
                    assert served.status_code == 200, (minute, served.text)
            per_minute.append(len(await admin.calls(REFRESH)) - before)
        await issued_tokens(admin, canaries)
        calls = await admin.calls(REFRESH)
        assert {call["code"] for call in calls} == {0}
        # Half of 600 s: two refreshes per grant in ten minutes, at most one in any minute.
        assert len(calls) == 2 * len(open_ids)
        assert max(per_minute) <= len(open_ids)
        print(f"\nrefresh calls per minute over 10 minutes, 5 grants: {per_minute}")


async def advance(clock: ShiftClock, admin: EmulatorAdmin, delta: timedelta) -> None:
    clock.offset += delta
    await admin.advance(delta.total_seconds())


async def test_a_database_restart_during_refreshes_leaves_every_grant_alive(
    canaries: Canaries,
) -> None:
    open_ids, emulator = accounts(20)
    async with (
        restartable_database() as database,
        run_stack(
            database_url=database.url,
            encryption_keys=KEYS,
            emulator_config=emulator,
            worker_enabled=False,
            tiktok_retry_base_delay=0.05,
            # Each round's 20 refreshes at once take their slots in the call budget: at the
            # default 10 a second the last ones land after the reads' 2 s wait.
            tiktok_rate_limit_qps=50,
            tiktok_rate_limit_qpm=3000,
        ) as stack,
        httpx.AsyncClient(base_url=stack.emulator_url, timeout=60) as admin_http,
    ):
        canaries.add("emulator-secret")
        admin = EmulatorAdmin(admin_http)
        service = app_service(stack.service)
        key = (await service.api_keys.create("restart", [])).key.get_secret_value()
        canaries.add(key)
        await seed_account_grants(stack, open_ids)
        raw = database.url.replace("+asyncpg", "")
        connection = await asyncpg.connect(raw)
        await connection.execute(AGE_TOKENS)
        await connection.close()
        await admin.fault(REFRESH, *[{"hang": True}] * len(open_ids))

        async with httpx.AsyncClient(base_url=stack.service_url, timeout=30) as http:
            reads = [
                asyncio.create_task(http.get(f"/tokens/accounts/{open_id}", headers=bearer(key)))
                for open_id in open_ids
            ]
            await admin.wait_hanging(len(open_ids))

            async def rotate_while_down() -> None:
                # TikTok answers every refresh (rotating the refresh tokens) while the
                # database is down: the service must keep the new pairs and save them later.
                await admin.release()
                await asyncio.sleep(0.5)  # the database stays down a moment after TikTok answered

            started = time.monotonic()
            await database.restart(rotate_while_down)
            restarted = time.monotonic() - started
            answers = await asyncio.gather(*reads)
        assert all(answer.status_code in (200, 503) for answer in answers), [
            answer.status_code for answer in answers
        ]
        connection = await asyncpg.connect(raw)
        try:
            await leases_released(connection, time.monotonic() + 30)
            # Every grant refreshes again with the token TikTok rotated to: all answer code 0.
            await connection.execute(AGE_TOKENS)
        finally:
            await connection.close()
        async with httpx.AsyncClient(base_url=stack.service_url, timeout=30) as http:
            after = await asyncio.gather(
                *(http.get(f"/tokens/accounts/{o}", headers=bearer(key)) for o in open_ids)
            )
        state = await issued_tokens(admin, canaries)
        codes = Counter(call["code"] for call in await admin.calls(REFRESH))
        assert [response.status_code for response in after] == [200] * len(open_ids)
        assert codes == {0: 2 * len(open_ids)}, codes
        assert {g["status"] for g in state["account_grants"]} == {"active"}
        print(f"\ndatabase down and up in {restarted:.1f} s; refresh codes {dict(codes)}")
