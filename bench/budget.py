"""The cost of the TikTok call budget's check per call, against a bare database round trip.

    uv run python bench/budget.py [--calls 5000] [--callers 8]

Starts an embedded PostgreSQL and times, in one run, `--calls` of each, one after another on
one replica's pool:

- baseline: `SELECT 1` on the bare asyncpg pool (one round trip);
- the statement: `take_slot`, the one statement that takes a slot (repository/budget.py);
- acquire: `RateBudget.acquire` as a caller sees it (the turn between callers, the dispatcher
  task, the statement), with a budget too large to make anyone wait.

Then the same `acquire` from `--callers` concurrent callers on each of two replicas (two pools
over the one database, contending for the one row), as slots a second. Prints each as
microseconds a call and as a ratio against the baseline. The budget adds its statement's round
trip to a proxied call's path, and nothing else when it has a free slot: the ratio of acquire
to the baseline is what a call pays for the budget beyond one round trip to PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.db import Database, migrate
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.repository.budget import take_slot

APP = "bench-app"
# Far above what the bench can ask, so that no call waits: what is timed is the check alone.
QPS = 1_000_000.0


async def per_call(calls: int, step: Callable[[], Awaitable[object]]) -> float:
    """Median of five rounds of `calls // 5` sequential steps, in microseconds a step."""
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls // 5):
            await step()
        rounds.append((time.perf_counter() - began) / (calls // 5) * 1e6)
    return statistics.median(rounds)


async def main(url: str, calls: int, callers: int) -> None:
    await migrate(url)
    one, other = await Database.connect(url), await Database.connect(url)
    try:
        budgets = [
            RateBudget(db, APP, qps=QPS, qpm=QPS * 60, metrics=Metrics()) for db in (one, other)
        ]

        async def select_one() -> object:
            async with one.acquire() as connection:
                return await connection.fetchval("SELECT 1")

        async def statement() -> object:
            return await take_slot(one, APP, [""], [1e-6], now=None, within=None)

        async def acquire() -> object:
            await budgets[0].acquire("campaign/get/", "bench")
            return None

        for warm in (select_one, statement, acquire):
            for _ in range(200):
                await warm()
        baseline = await per_call(calls, select_one)
        taken = await per_call(calls, statement)
        acquired = await per_call(calls, acquire)

        async def caller(budget: RateBudget, name: str, count: int) -> None:
            for _ in range(count):
                await budget.acquire("campaign/get/", name)

        count = calls // (2 * callers)
        began = time.perf_counter()
        await asyncio.gather(
            *(caller(b, f"key{n}", count) for b in budgets for n in range(callers))
        )
        elapsed = time.perf_counter() - began
        slots = count * 2 * callers / elapsed
    finally:
        await one.close()
        await other.close()

    print(f"budget check per call, {calls} calls each (median of 5 rounds)")
    print("| what | us / call | x SELECT 1 |")
    print("| --- | --- | --- |")
    for what, us in [
        ("baseline: SELECT 1 on the pool", baseline),
        ("take_slot (the one statement)", taken),
        ("RateBudget.acquire, free slot", acquired),
    ]:
        print(f"| {what} | {us:.0f} | {us / baseline:.2f} |")
    print(
        f"two replicas x {callers} callers, one row: {slots:.0f} slots a second "
        f"({1e6 / slots:.0f} us a slot, {1e6 / slots / baseline:.2f} x SELECT 1)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--callers", type=int, default=8)
    args = parser.parse_args()
    with embedded_postgres() as url:
        asyncio.run(main(url, args.calls, args.callers))
