"""Issue 19's budget run: two replicas of the service and several keys demanding three times
the app's budget through the gateway, against the emulator enforcing TikTok's tier.

    uv run python bench/gateway_budget.py [--seconds 10] [--qps 10]

Starts an embedded PostgreSQL, the emulator in its own process (one advertiser and its token,
the app's tier at `--qps` a second and 60 x that a minute, as TikTok counts them) and two
service processes on uvicorn over the same database (two replicas: they share nothing but
PostgreSQL), with TIKTOK_RATE_LIMIT_QPS = `--qps`. Then, for `--seconds`:

    flooders   three keys, each sending calls back to back on 2 connections per replica,
               together asking for about 3 x the budget and more;
    the quiet  one more key calling twice a second, alternating replicas.

Prints what the emulator counted each wall-clock second (the budget holds if no second sees
more than QPS), how many calls TikTok throttled (40100), the share of the budget used, the
statuses the callers saw (only 200 and 429 expected), and the quiet key's successes and wait
(p50, p95). With `--throttle-at T`, the emulator answers 40100 to everything for 3 s from T s
into the run: the gateway should send about one second's budget in those 3 s (the app-wide
cool-down), then recover. Nothing here is asserted: tests/test_budget.py holds the rules.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter

import httpx
from gateway import ADVERTISER, BENCH, ENDPOINT, QUERY, emulated
from running import free_port, running

FLOODERS = 3


async def caller(
    base: str, key: str, until: float, statuses: Counter[int], pause: float | None
) -> list[float]:
    """Calls until `until`; back to back, or one every `pause` seconds. Each call's time."""
    waits: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        while time.monotonic() < until:
            started = time.monotonic()
            answer = await http.get(
                f"/proxy/open_api/v1.3/{ENDPOINT}?{QUERY}", headers={"access-token": key}
            )
            statuses[answer.status_code] += 1
            waits.append(time.monotonic() - started)
            if pause is not None:
                await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))
    return waits


async def throttle(emulator_url: str, at: float) -> float:
    """From `at` seconds on, 40100 to every call for 3 s; returns when it began (epoch)."""
    await asyncio.sleep(at)
    async with httpx.AsyncClient() as http:
        began = time.time()
        await http.post(f"{emulator_url}/_emulator/throttle", json={"seconds": 3})
    return began


async def load(
    bases: list[str], keys: list[str], seconds: float, emulator_url: str, throttle_at: float | None
) -> float | None:
    until = time.monotonic() + seconds
    throttled = (
        asyncio.ensure_future(throttle(emulator_url, throttle_at))
        if throttle_at is not None
        else None
    )
    flood: Counter[int] = Counter()
    quiet: Counter[int] = Counter()
    tasks = [
        caller(base, key, until, flood, None)
        for key in keys[:FLOODERS]
        for base in bases
        for _ in range(2)
    ]
    quiet_tasks = [caller(base, keys[FLOODERS], until, quiet, 1.0) for base in bases]
    results = await asyncio.gather(*tasks, *quiet_tasks)
    quiet_waits = sorted(w for each in results[len(tasks) :] for w in each)
    print(f"flooding keys: statuses {dict(flood)}")
    print(
        f"quiet key: statuses {dict(quiet)}; wait p50 {statistics.median(quiet_waits):.3f} s, "
        f"p95 {quiet_waits[int(0.95 * (len(quiet_waits) - 1))]:.3f} s"
    )
    return None if throttled is None else await throttled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--qps", type=int, default=10)
    parser.add_argument("--throttle-at", type=float)
    args = parser.parse_args(argv)
    with emulated(qps=args.qps, emulator_qps=args.qps) as (stack, servers, scratch):
        env, emulator_url = stack.env, stack.emulator_url
        keys = [stack.key, *asyncio.run(more_keys(env, FLOODERS))]
        uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--app-dir", BENCH]
        bases = []
        for n in range(2):
            port = free_port()
            servers.enter_context(
                running(
                    [*uvicorn, "--factory", "gateway:budgeted", "--port", str(port)],
                    env,
                    f"http://127.0.0.1:{port}/healthz",
                    scratch / f"replica{n}.log",
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        print(
            f"{args.seconds:g} s, budget {args.qps} QPS / {60 * args.qps} QPM, 2 replicas, "
            f"{FLOODERS} flooding keys x 2 replicas x 2 connections, 1 key twice a second; "
            f"GET {ENDPOINT} for advertiser {ADVERTISER}"
        )
        started = int(time.time())
        began = asyncio.run(load(bases, keys, args.seconds, emulator_url, args.throttle_at))
        ended = int(time.time())
        counts = httpx.get(
            f"{emulator_url}/_emulator/calls/per_second", params={"endpoint": ENDPOINT}
        ).json()["per_second"]
        per_second = [counts.get(str(second), 0) for second in range(started, ended + 1)]
        print(f"calls the emulator counted, second by second: {per_second}")
        full = per_second[1:-1]  # the first and last seconds are partly outside the run
        print(
            f"busiest second {max(per_second)} (budget {args.qps}); budget used over the full "
            f"seconds {sum(full) / (args.qps * len(full)):.0%}"
        )
        if began is not None:
            first = int(began) + 1  # the first whole second of the 3 throttled ones
            during = [counts.get(str(s), 0) for s in range(first, first + 3)]
            after = [counts.get(str(s), 0) for s in range(first + 3, ended)]
            print(
                f"throttled from second {first - started}: the emulator got {during} "
                f"(sum {sum(during)}, one second's budget is {args.qps}); after it: {after}"
            )
        calls = httpx.get(f"{emulator_url}/_emulator/calls", params={"endpoint": ENDPOINT}).json()
        codes = Counter(call.get("code") for call in calls["calls"])
        print(f"TikTok's codes, of the emulator's last {len(calls['calls'])} calls: {dict(codes)}")


async def more_keys(env: dict[str, str], n: int) -> list[str]:
    from running import settings_of

    from tiktok_auth_service.service import open_service

    async with open_service(settings_of(env)) as service:
        created = [await service.api_keys.create(f"flood{i}", []) for i in range(n)]
    return [each.key.get_secret_value() for each in created]


if __name__ == "__main__":
    main()
