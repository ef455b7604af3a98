"""TikTok-account refresh end to end: concurrency across instances, rotation, crashes, worker."""

from __future__ import annotations

import asyncio
import math
import os
import signal
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import (
    EmulatorAdmin,
    ShiftClock,
    api_key,
    issued_tokens,
    seed_account_grants,
    start_serve,
)
from tests.fixtures import Canaries
from tiktok_auth_dev.stack import bind_socket, serving
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app

OPEN_ID = "-000emulatoropenid0001"
REFRESH = "tt_user/oauth2/refresh_token/"


async def advance(clock: ShiftClock, admin: EmulatorAdmin, delta: timedelta) -> None:
    """Move the service's clock and TikTok's together."""
    clock.offset += delta
    await admin.advance(delta.total_seconds())


async def test_200_concurrent_reads_on_two_instances_refresh_once(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    clock = ShiftClock()
    async with start_stack(clock=clock) as (stack, browser, admin):
        key = await api_key(stack, canaries)
        assert (await browser.consent(flow="tiktok_account")).status_code == 200
        await advance(clock, admin, timedelta(hours=23, minutes=58))

        second = create_app(stack.settings, clock=clock)
        sock = bind_socket("127.0.0.1", 0)
        second_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with (
            serving(second, sock),
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as http,
        ):
            urls = [stack.service_url, second_url]
            responses = await asyncio.gather(
                *(
                    http.get(
                        f"{urls[i % 2]}/tokens/accounts/{OPEN_ID}",
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for i in range(200)
                )
            )
        state = await issued_tokens(admin, canaries)
        assert [r.status_code for r in responses] == [200] * 200
        tokens = {r.json()["access_token"] for r in responses}
        [grant] = state["account_grants"]
        assert tokens == {grant["access_tokens"][-1]["access_token"]}
        assert len(await admin.calls(REFRESH)) == 1


async def test_rotated_out_refresh_tokens_are_never_sent_again(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    clock = ShiftClock()
    async with start_stack(clock=clock) as (stack, browser, admin):
        key = await api_key(stack, canaries)
        await browser.consent(flow="tiktok_account")
        for _ in range(5):
            await advance(clock, admin, timedelta(hours=24))
            served = await browser.http.get(
                f"/tokens/accounts/{OPEN_ID}", headers={"authorization": f"Bearer {key}"}
            )
            assert served.status_code == 200
        state = await issued_tokens(admin, canaries)
        calls = await admin.calls(REFRESH)
        # The emulator answers 40107 to any retired refresh token: none was ever presented.
        assert [call["code"] for call in calls] == [0] * 5
        assert len(state["account_grants"][0]["retired_refresh_tokens"]) == 5


@pytest.mark.parametrize(
    ("after_kill", "expected"),
    [
        # TikTok completed the refresh (rotating the token) but the answer died with the process.
        ({"hang": True}, 409),
        # TikTok never completed it: the stored refresh token is still good.
        ({"hang": True, "then": {"http_status": 504}}, 200),
    ],
)
async def test_killing_the_refreshing_process_leaves_a_clean_state(
    start_stack: Callable[..., Any],
    canaries: Canaries,
    pg: asyncpg.Connection,
    after_kill: dict[str, Any],
    expected: int,
    tmp_path: Path,
) -> None:
    clock = ShiftClock()
    async with start_stack(clock=clock) as (stack, browser, admin):
        key = await api_key(stack, canaries)
        auth = {"authorization": f"Bearer {key}"}
        await browser.consent(flow="tiktok_account")
        # The stored token as a day later, a minute before expiry: the next read refreshes.
        await pg.execute(
            "UPDATE oauth_grant SET refreshed_at = now() - interval '1 day',"
            " expires_at = now() + interval '1 minute'"
        )
        await admin.fault(REFRESH, after_kill)

        replica, replica_url, _ = await start_serve(stack, tmp_path, workers=1)
        async with httpx.AsyncClient(timeout=60) as http:
            read = asyncio.create_task(
                http.get(f"{replica_url}/tokens/accounts/{OPEN_ID}", headers=auth)
            )
            await admin.wait_hanging(1)  # the replica is inside its refresh, holding the lease
            # The supervisor (which would replace its process), then the process refreshing.
            tree = f"/proc/{replica.pid}/task/{replica.pid}/children"
            (child,) = Path(tree).read_text().split()  # noqa: ASYNC240 - a small /proc file
            replica.send_signal(signal.SIGKILL)
            os.kill(int(child), signal.SIGKILL)
            await replica.wait()
            with pytest.raises(httpx.TransportError):
                await read
        await admin.release()
        # Two minutes on: the dead replica's lease has run out, and so has the stored token.
        await advance(clock, admin, timedelta(minutes=2))

        after = await browser.http.get(f"/tokens/accounts/{OPEN_ID}", headers=auth)
        await issued_tokens(admin, canaries)
        assert after.status_code == expected, after.text
        if expected == 409:
            assert after.json()["code"] == "reauthorization_required"
            assert [c["code"] for c in await admin.calls(REFRESH)][-1] == 40107
        else:
            assert after.json()["access_token"].startswith("act.")


async def test_worker_refreshes_1000_due_grants_within_qps(
    start_stack: Callable[..., Any], canaries: Canaries
) -> None:
    qps, count = 100, 1000
    open_ids = [f"-000acct{n:05d}" for n in range(count)]
    clock = ShiftClock()
    emulator = {
        "accounts": [{"open_id": o, "display_name": o} for o in open_ids],
        "qps": 0,
        "qpm": 0,
        "qpd": 0,
    }
    async with start_stack(
        clock=clock,
        emulator_config=emulator,
        tiktok_rate_limit_qps=qps,
        tiktok_rate_limit_qpm=qps * 60,
        worker_concurrency=8,
    ) as (stack, _, admin):
        await seed_account_grants(stack, open_ids)
        await advance(clock, admin, timedelta(hours=23, minutes=55))

        service = app_service(stack.service)
        assert await service.worker.drain() == count

        calls = await admin.calls(REFRESH)
        await issued_tokens(admin, canaries)
        assert len(calls) == count
        assert {call["code"] for call in calls} == {0}
        per_second = Counter(math.floor(call["wall_time"]) for call in calls)
        assert max(per_second.values()) <= qps, per_second
        async with service.db.pool.acquire() as connection:
            still_due = await connection.fetchval(
                "SELECT count(*) FROM oauth_grant WHERE expires_at < $1",
                clock.now() + timedelta(hours=1),
            )
        assert still_due == 0
