"""Issue 19's budget must-holds end to end: two replicas of the service (two `serve` processes on
one database, sharing nothing else) and several broker keys calling GET advertiser/info/ through
/proxy/open_api/v1.3/ over real HTTP, against the emulator enforcing TikTok's tier (QPS calls in
each fixed second, 60 x that in each fixed minute, 40100 beyond them).

The load runs on a schedule (so many calls a second, each in its own task whatever the earlier
ones still wait for), so the demand is known. What is asserted is counted: the emulator's calls
per wall-clock second and their codes, the statuses the callers saw. Waits are printed, never
asserted; bench/gateway_budget.py measures the same run, tests/test_budget.py holds the budget's
rules on their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from tests.e2e.conftest import EmulatorAdmin, api_key, issued_tokens, start_serve
from tests.fixtures import Canaries
from tests.secret_scan import SecretScan
from tiktok_auth_dev.stack import Stack

QPS = 10  # the emulator's tier and TIKTOK_RATE_LIMIT_QPS
ENDPOINT = "advertiser/info/"
ADVERTISER = "7100000000000000001"  # one of the emulator's, connected by the browser leg
CALL = f"/proxy/open_api/v1.3/{ENDPOINT}?advertiser_ids=" + quote(json.dumps([ADVERTISER]))
# X-Broker-Timeout of every call, generous for a loaded machine (beyond it the answer is 429).
# The same for every key: with a shorter one, the flooders' calls would leave the queue before
# the quiet key's came due, and a budget serving calls first come, first served would pass too.
DEADLINE = "4"
# Each key calling gets its turn in the budget (about 9.5 calls a second: 5 % is kept for
# jitter): with 3 flooders, the quiet key's 2 a second are under its quarter. With 4 they would
# be over its fifth (1.9 a second), and its wait would grow all through the run.
FLOODERS = 3
LOAD_SECONDS = 10
TIER = {"qps": QPS, "qpm": 60 * QPS}  # the emulator's, as TikTok counts it


class Answer(NamedTuple):
    status: int
    code: str | None  # X-TikTok-Code
    wait: float  # seconds from sending the call to its answer


async def call(client: httpx.AsyncClient, credentials: dict[str, str]) -> Answer:
    began = time.monotonic()
    response = await client.get(CALL, headers={**credentials, "x-broker-timeout": DEADLINE})
    return Answer(
        response.status_code, response.headers.get("x-tiktok-code"), time.monotonic() - began
    )


async def on_schedule(
    rate: float, stop: asyncio.Event, make: Callable[[int], Coroutine[Any, Any, Answer]]
) -> list[Answer]:
    """`make(0)`, `make(1)`, ... started `rate` a second, each in its own task, until `stop` is
    set; every answer, once all came."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    calls: list[asyncio.Task[Answer]] = []
    while not stop.is_set():
        calls.append(asyncio.create_task(make(len(calls))))
        with contextlib.suppress(TimeoutError):
            # The load's own schedule: the next call is due then, unless the load stops first.
            await asyncio.wait_for(stop.wait(), max(0.0, began + len(calls) / rate - loop.time()))
    return await asyncio.gather(*calls)


async def flood(
    clients: list[httpx.AsyncClient], keys: list[str], stop: asyncio.Event
) -> list[Answer]:
    """3 x the budget until `stop`: the keys in turn, each on both replicas in turn."""
    return await on_schedule(
        3 * QPS,
        stop,
        lambda n: call(clients[n // len(keys) % 2], {"access-token": keys[n % len(keys)]}),
    )


def second_by_second(per_second: dict[int, int]) -> list[int]:
    """The emulator's counts from its first second with a call to its last, none left out."""
    return [per_second.get(s, 0) for s in range(min(per_second), max(per_second) + 1)]


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.1)  # polling the emulator's state, bounded by the deadline


@contextlib.asynccontextmanager
async def two_replicas(
    stack: Stack, tmp_path: Path, scan: SecretScan
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two `serve` processes (one server process each) on the stack's database and emulator,
    the budget at QPS (and 60 x QPS a minute), TikTok's answers repeated as in production, and
    a client for each, whose answers the secret scan reads. When the block ends, each replica's
    metrics and log go to the scan too, and each must stop cleanly."""
    settings = {
        "TIKTOK_RATE_LIMIT_QPS": str(QPS),
        "TIKTOK_RATE_LIMIT_QPM": str(60 * QPS),
        "TIKTOK_RETRY_ATTEMPTS": "4",
        "LOG_LEVEL": "DEBUG",
    }
    metrics = [tmp_path / f"replica{n}" for n in range(2)]
    for folder in metrics:
        folder.mkdir()
    # Started together: each takes seconds to start on a busy machine.
    starts = await asyncio.gather(
        *(start_serve(stack, folder, 1, **settings) for folder in metrics),
        return_exceptions=True,
    )
    replicas = [each for each in starts if not isinstance(each, BaseException)]
    # Read as it comes: a full pipe would stop the replica.
    outputs = [
        asyncio.create_task(process.stderr.read())  # type: ignore[union-attr]
        for process, _, _ in replicas
    ]
    try:
        for each in starts:
            if isinstance(each, BaseException):
                raise each
        async with contextlib.AsyncExitStack() as opened:
            clients = [
                await opened.enter_async_context(
                    httpx.AsyncClient(
                        base_url=url,
                        timeout=60,
                        limits=httpx.Limits(max_connections=500),
                        event_hooks={"response": [scan.response_hook(url)]},
                    )
                )
                for _, url, _ in replicas
            ]
            yield clients
            for client in clients:
                scan.metrics((await client.get("/metrics")).content)
    finally:
        for process, _, _ in replicas:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        statuses = [await process.wait() for process, _, _ in replicas]
        for n, ((_, _, lines), output) in enumerate(zip(replicas, outputs, strict=True)):
            logged = (b"".join(lines) + await output).decode(errors="replace").splitlines()
            scan.log_lines(f"replica {n}'s log", logged)
    assert statuses == [0, 0], f"the replicas stopped with {statuses}"


async def connected(browser: Any, admin: EmulatorAdmin, canaries: Canaries) -> None:
    """An advertiser connected through the browser leg, its token a canary."""
    assert (await browser.consent()).status_code == 200
    await issued_tokens(admin, canaries)


async def warm(clients: list[httpx.AsyncClient], key: str) -> None:
    """One call through each replica: the key, the grant and TikTok answering."""
    for client in clients:
        answer = await call(client, {"access-token": key})
        assert (answer.status, answer.code) == (200, "0"), answer


async def test_two_replicas_flooded_at_3x_keep_the_budget_and_a_quiet_key_gets_every_call(
    start_stack: Callable[..., Any],
    canaries: Canaries,
    leak_guard: SecretScan,
    tmp_path: Path,
) -> None:
    async with start_stack(emulator_config=TIER) as (stack, browser, admin):
        await connected(browser, admin, canaries)
        flooders = [await api_key(stack, canaries, f"flood{n}") for n in range(FLOODERS)]
        quiet = await api_key(stack, canaries, "quiet")
        async with two_replicas(stack, tmp_path, leak_guard) as clients:
            await warm(clients, quiet)
            stop = asyncio.Event()
            began = time.time()
            asyncio.get_running_loop().call_later(LOAD_SECONDS, stop.set)
            flooded, calm = await asyncio.gather(
                flood(clients, flooders, stop),
                # Twice a second, on either replica in turn, as a Bearer token this time.
                on_schedule(
                    2, stop, lambda n: call(clients[n % 2], {"authorization": f"Bearer {quiet}"})
                ),
            )
        per_second = await admin.per_second(ENDPOINT)
        calls = await admin.calls(ENDPOINT)

    waits = sorted(answer.wait for answer in calm)
    figures = (
        f"the emulator's calls a second: {second_by_second(per_second)}; the quiet key's "
        f"{len(calm)} calls: {dict(Counter(a.status for a in calm))}, wait p50 "
        f"{statistics.median(waits):.3f} s, p95 {waits[int(0.95 * (len(waits) - 1))]:.3f} s"
    )
    print(figures)
    # TikTok throttled nothing, and no second saw more than the budget.
    assert Counter(c["code"] for c in calls) == {0: len(calls)}, figures
    assert max(per_second.values()) <= QPS, figures
    # At least 80 % of it was used over the seconds wholly inside the load.
    full = [per_second.get(s, 0) for s in range(int(began) + 1, int(began + LOAD_SECONDS))]
    assert sum(full) >= 0.8 * QPS * len(full), figures
    # The callers saw TikTok's answers or 429, never a 5xx; what was refused reached nobody.
    statuses = Counter(answer.status for answer in flooded + calm)
    assert set(statuses) == {200, 429}, figures + f"; statuses {statuses}"
    served = [answer for answer in flooded + calm if answer.status == 200]
    assert {answer.code for answer in served} == {"0"}
    assert len(calls) == len(clients) + len(served)
    # The quiet key had every call served.
    assert len(calm) >= 2 * LOAD_SECONDS - 1, figures
    assert [(a.status, a.code) for a in calm] == [(200, "0")] * len(calm), figures


async def test_tiktok_throttling_everything_for_3_s_gets_one_seconds_budget_then_recovers(
    start_stack: Callable[..., Any],
    canaries: Canaries,
    leak_guard: SecretScan,
    tmp_path: Path,
) -> None:
    async with start_stack(emulator_config=TIER) as (stack, browser, admin):
        await connected(browser, admin, canaries)
        flooders = [await api_key(stack, canaries, f"flood{n}") for n in range(FLOODERS)]
        async with two_replicas(stack, tmp_path, leak_guard) as clients:
            await warm(clients, flooders[0])
            stop = asyncio.Event()
            load = asyncio.create_task(flood(clients, flooders, stop))

            async def answered(since: float = 0.0) -> int:
                return sum(
                    c["code"] == 0 and c["emulator_time"] >= since
                    for c in await admin.calls(ENDPOINT)
                )

            async def flowing() -> bool:
                return await answered() >= len(clients) + QPS

            await eventually(flowing, "the load reaching TikTok", 30)
            until = await admin.throttle(3)

            async def over() -> bool:
                return bool(await admin.now() >= until)

            async def recovered() -> bool:
                return await answered(until) >= QPS

            await eventually(over, "the throttle's end", 10)
            await eventually(recovered, "a second's budget answered after the throttle", 30)
            stop.set()
            answers = await load
            after = [await call(client, {"access-token": flooders[1]}) for client in clients]
        calls = await admin.calls(ENDPOINT)
        per_second = await admin.per_second(ENDPOINT)

    during = [c for c in calls if until - 3 <= c["emulator_time"] < until]
    later = [c for c in calls if c["emulator_time"] >= until]
    first = min(per_second)
    figures = (
        f"the emulator's calls a second: {second_by_second(per_second)}; "
        f"throttled from {until - 3 - first:.3f} s to {until - first:.3f} s: {len(during)} "
        f"calls, {dict(Counter(c['code'] for c in during))}; after it: {len(later)} calls, "
        f"{dict(Counter(c['code'] for c in later))}"
    )
    print(figures)
    # The app-wide cool-down: at most one second's budget reached TikTok while it throttled.
    assert 1 <= len(during) <= QPS, figures
    assert {c["code"] for c in during} == {40100}, figures
    # Then TikTok answered again, and never throttled what the budget let through.
    outside = [c for c in calls if not until - 3 <= c["emulator_time"] < until]
    assert {c["code"] for c in outside} == {0}, figures
    assert [(a.status, a.code) for a in after] == [(200, "0")] * len(clients)
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {200, 429}, statuses
