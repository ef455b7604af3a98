"""The app's TikTok call budget (tiktok_auth_service.budget): one grid for every replica in
PostgreSQL, refusals that take no slot, cool-downs every replica sees, callers served in turn."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable

import pytest

from tests.fixtures import APP_ID
from tiktok_auth_service import errors
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.db import Database
from tiktok_auth_service.metrics import Metrics


class FakeTime:
    """A monotonic clock every replica of a test shares; the `n`-th sleep wakes `late(n)`
    seconds late."""

    def __init__(self, late: Callable[[int], float] = lambda n: 0.0) -> None:
        self.now = 1000.0
        self.late = late
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept.append(seconds)
            self.now += seconds + self.late(len(self.slept))
        await asyncio.sleep(0)


@pytest.fixture
async def databases(migrated: str) -> AsyncIterator[list[Database]]:
    """Two replicas' databases (each its own pools) over one PostgreSQL, the budget reset."""
    replicas = [await Database.connect(migrated) for _ in range(2)]
    async with replicas[0].acquire() as connection:
        await connection.execute("TRUNCATE rate_budget")
    try:
        yield replicas
    finally:
        for db in replicas:
            await db.close()


def budget(
    db: Database,
    qps: float,
    time_: FakeTime | None = None,
    endpoint_qps: dict[str, float] | None = None,
) -> RateBudget:
    return RateBudget(
        db,
        APP_ID,
        qps=qps,
        qpm=qps * 60,
        metrics=Metrics(),
        endpoint_qps=endpoint_qps or {},
        clock=time_,
        sleep=time_.sleep if time_ else asyncio.sleep,
    )


def busiest(starts: list[float], window: float) -> int:
    """The most starts in any window of `window` seconds."""
    starts = sorted(starts)
    return max(sum(1 for t in starts if first <= t < first + window) for first in starts)


class TestGrid:
    async def _starts(
        self, databases: list[Database], late: Callable[[int], float], count: int
    ) -> list[float]:
        """Start times of `count` calls on a fake clock where the n-th wake-up is `late(n)`
        seconds late."""
        clock = FakeTime(late)
        paced = budget(databases[0], 50, clock)
        starts: list[float] = []
        for _ in range(count):
            await paced.acquire("campaign/get/", "worker")
            starts.append(clock.now)
        return starts

    async def test_late_wake_ups_do_not_slow_the_pace(self, databases: list[Database]) -> None:
        starts = await self._starts(databases, lambda n: 0.005, 100)
        # 99 intervals: the 5 ms each wake-up is late do not add up.
        assert starts[-1] - starts[0] <= 99 * RateBudget.guard / 50 + 0.005
        assert busiest(starts, 1 + RateBudget.jitter) <= 50

    async def test_a_stalled_loop_never_bursts_past_the_budget(
        self, databases: list[Database]
    ) -> None:
        # Every 30th wake-up is half a second late; the others 1-15 ms late.
        starts = await self._starts(
            databases, lambda n: 0.5 if n % 30 == 0 else (n % 15 + 1) / 1000, 150
        )
        assert busiest(starts, 1 + RateBudget.jitter) <= 50
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert min(gaps) >= RateBudget.guard / 50 - RateBudget.catch_up


class TestWithin:
    async def test_a_wait_past_its_bound_is_refused_at_once_and_takes_no_slot(
        self, databases: list[Database]
    ) -> None:
        clock = FakeTime()
        paced = budget(databases[0], 2, clock)
        await paced.acquire("campaign/get/", "a", within=0.1)  # idle: at once
        with pytest.raises(errors.RateLimited) as refused:
            await paced.acquire("campaign/get/", "a", within=0.1)  # the next is 0.525 s away
        assert refused.value.retry_after == 1
        assert clock.slept == []
        await paced.acquire("campaign/get/", "a", within=1)  # no slot was taken: the next
        assert clock.slept == [pytest.approx(RateBudget.guard / 2)]

    async def test_the_database_refuses_for_another_replica_taking_no_slot(
        self, databases: list[Database]
    ) -> None:
        clock = FakeTime()
        one, other = budget(databases[0], 2, clock), budget(databases[1], 2, clock)
        await one.acquire("campaign/get/", "a")
        with pytest.raises(errors.RateLimited) as refused:
            # This replica has not seen the slot taken: the database refuses.
            await other.acquire("campaign/get/", "b", within=0.1)
        assert refused.value.retry_after == 1
        await one.acquire("campaign/get/", "a", within=1)
        assert clock.slept == [pytest.approx(RateBudget.guard / 2)]


class TestEndpointLimits:
    async def test_a_limited_endpoint_is_spaced_and_holds_no_other_call_back(
        self, databases: list[Database]
    ) -> None:
        clock = FakeTime()
        paced = budget(databases[0], 10, clock, {"report/task/create/": 2})
        starts: dict[str, list[float]] = {"report/task/create/": [], "campaign/get/": []}

        async def call(endpoint: str) -> None:
            await paced.acquire(endpoint, "reports")
            starts[endpoint].append(clock.now)

        await asyncio.wait_for(
            asyncio.gather(*(call(e) for e in ["report/task/create/", "campaign/get/"] * 3)),
            timeout=30,
        )
        reports, campaigns = starts["report/task/create/"], starts["campaign/get/"]
        assert min(b - a for a, b in itertools.pairwise(reports)) >= RateBudget.guard / 2 - 1e-9
        # The campaigns queued behind the reports go while the reports' endpoint is busy.
        assert max(campaigns) <= reports[0] + 3 * paced.interval + 1e-9
        every = sorted(reports + campaigns)
        assert min(b - a for a, b in itertools.pairwise(every)) >= paced.interval - 1e-9

    async def test_an_endpoint_limit_holds_across_replicas(self, databases: list[Database]) -> None:
        clock = FakeTime()
        limits = {"*": 1.0}  # every endpoint its own budget, as in TikTok's sandbox
        one, other = (budget(db, 10, clock, limits) for db in databases)
        await one.acquire("campaign/get/", "a")
        await other.acquire("advertiser/info/", "b")  # another endpoint: the next app slot
        assert clock.now == pytest.approx(1000 + one.interval)
        await other.acquire("campaign/get/", "b")  # the first replica's endpoint: a second on
        assert clock.now == pytest.approx(1000 + RateBudget.guard)


class TestCoolDown:
    async def test_every_replica_waits_out_a_cool_down(self, databases: list[Database]) -> None:
        clock = FakeTime()
        one, other = budget(databases[0], 10, clock), budget(databases[1], 10, clock)
        await one.cool_down(5)
        with pytest.raises(errors.RateLimited) as refused:
            await other.acquire("campaign/get/", "b", within=1)
        assert refused.value.retry_after == 4
        await other.acquire("campaign/get/", "b")
        assert clock.now == pytest.approx(1005)
        # The replica that cooled down refuses at once, without asking the database.
        await one.cool_down(5)
        with pytest.raises(errors.RateLimited):
            await one.acquire("campaign/get/", "a", within=1)

    async def test_throttled_again_soon_after_one_cools_down_twice_as_long(
        self, databases: list[Database]
    ) -> None:
        clock = FakeTime()
        one, other = budget(databases[0], 10, clock), budget(databases[1], 10, clock)

        async def throttled(by: RateBudget, then: RateBudget) -> float:
            """How long `then` waits after `by` was throttled, a second after the last
            cool-down ended (its slot's start)."""
            clock.now += 1
            await by.cool_down(1)
            began = clock.now
            await then.acquire("campaign/get/", "a")
            return clock.now - began

        await one.cool_down(1)
        clock.now += 0.5
        await other.cool_down(1)  # a call started before it, throttled too: not longer
        await other.acquire("campaign/get/", "b")
        assert clock.now == pytest.approx(1001)
        waits = [await throttled(*pair) for pair in [(one, other), (other, one)] * 5]
        # Doubling up to the five minutes TikTok asks after a QPM breach.
        assert waits == pytest.approx([2, 4, 8, 16, 32, 64, 128, 256, 300, 300])
        clock.now += 61  # more than a minute after the last ended: one second again
        assert await throttled(one, other) == pytest.approx(1)
        started = one.metrics.budget_cool_downs._value.get()
        assert started + other.metrics.budget_cool_downs._value.get() == 12


class TestFairness:
    async def test_a_flood_does_not_starve_a_caller_now_and_then(
        self, databases: list[Database]
    ) -> None:
        clock = FakeTime()
        paced = budget(databases[0], 10, clock)
        interval = paced.interval
        waits: list[float] = []
        polite: list[asyncio.Task[None]] = []

        async def now_and_then() -> None:
            began = clock.now
            await paced.acquire("advertiser/info/", "polite", within=3 * interval)
            waits.append(clock.now - began)

        async def flood_call(n: int) -> None:
            await paced.acquire("campaign/get/", "flood")
            if n % 5 == 0:  # every fifth start of the flood, the other caller calls once
                polite.append(asyncio.create_task(now_and_then()))

        flood = [asyncio.create_task(flood_call(n)) for n in range(40)]
        await asyncio.wait_for(asyncio.gather(*flood), timeout=30)
        await asyncio.wait_for(asyncio.gather(*polite), timeout=30)
        assert len(waits) == 8
        assert max(waits) <= 2 * interval + 1e-9
        # Behind its own queue the flood would have been refused that bound.
        more = [asyncio.create_task(paced.acquire("campaign/get/", "flood")) for _ in range(5)]
        await asyncio.sleep(0)
        with pytest.raises(errors.RateLimited):
            await paced.acquire("campaign/get/", "flood", within=3 * interval)
        await asyncio.wait_for(asyncio.gather(*more), timeout=30)


class TestStopping:
    async def test_every_call_still_waiting_is_refused(self, databases: list[Database]) -> None:
        clock, sleeping, never = FakeTime(), asyncio.Event(), asyncio.Event()

        async def sleep(seconds: float) -> None:
            sleeping.set()
            await never.wait()  # the slot never comes: only the stop ends the wait

        paced = RateBudget(
            databases[0], APP_ID, qps=2, qpm=120, metrics=Metrics(), clock=clock, sleep=sleep
        )
        await paced.acquire("campaign/get/", "a")
        waiting = [asyncio.create_task(paced.acquire("campaign/get/", c)) for c in "ab"]
        await asyncio.wait_for(sleeping.wait(), timeout=30)  # one slotted, one queued
        paced.close()
        for task in waiting:
            with pytest.raises(errors.RateLimited):
                await asyncio.wait_for(task, timeout=30)
        with pytest.raises(errors.RateLimited):
            await paced.acquire("campaign/get/", "a")

    async def test_calls_of_a_batch_taken_but_not_yet_started_are_refused(
        self, databases: list[Database]
    ) -> None:
        # At 100 a second one statement takes the slots of several calls; the dispatcher then
        # waits for each one's start. Stopping during that wait must refuse them too.
        clock, sleeping, never = FakeTime(), asyncio.Event(), asyncio.Event()

        async def sleep(seconds: float) -> None:
            sleeping.set()
            await never.wait()

        paced = RateBudget(
            databases[0], APP_ID, qps=100, qpm=6000, metrics=Metrics(), clock=clock, sleep=sleep
        )
        calls = [asyncio.create_task(paced.acquire("campaign/get/", c)) for c in "abcde"]
        await asyncio.wait_for(sleeping.wait(), timeout=30)  # the first started, four wait
        assert paced.waiting == 4
        paced.close()
        done, pending = await asyncio.wait(calls, timeout=30)
        assert not pending
        refused = [task for task in done if isinstance(task.exception(), errors.RateLimited)]
        assert len(refused) == 4


class TestReplicas:
    async def test_slots_taken_together_are_spaced_and_seen_by_the_other_replica(
        self, databases: list[Database]
    ) -> None:
        # At 100 a second a process takes the slots of up to 0.1 s in one statement.
        clock = FakeTime()
        one, other = budget(databases[0], 100, clock), budget(databases[1], 100, clock)
        calls = (one.acquire("campaign/get/", caller) for caller in "abcab")
        await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
        assert clock.slept == pytest.approx([one.interval] * 4)  # one grid, spaced
        clock.now = 1000  # the other replica asks when the first took them
        await other.acquire("campaign/get/", "c")
        assert clock.now == pytest.approx(1000 + 5 * one.interval)

    async def test_two_replicas_demanding_three_times_the_budget(
        self, databases: list[Database]
    ) -> None:
        """Real time: three callers on each of two replicas, each calling at half the budget;
        no second sees more starts than the budget, and the budget is used."""
        qps, seconds = 20, 4.0
        replicas = [budget(db, qps) for db in databases]
        starts: list[float] = []
        refused: list[int] = []

        async def call(paced: RateBudget, caller: str) -> None:
            try:
                await paced.acquire("campaign/get/", caller, within=0.5)
            except errors.RateLimited as exc:
                refused.append(exc.retry_after or 0)
            else:
                starts.append(time.monotonic())

        async def demand(paced: RateBudget, caller: str, rate: float) -> None:
            calls: list[asyncio.Task[None]] = []
            began = time.monotonic()
            for n in range(int(rate * seconds)):
                # The load's own schedule, not a wait for anything.
                await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
                calls.append(asyncio.create_task(call(paced, caller)))
            await asyncio.gather(*calls)

        began = time.monotonic()
        await asyncio.gather(
            *(demand(paced, f"key{i}", qps / 2) for paced in replicas for i in range(3))
        )
        assert busiest(starts, 1.0) <= qps, sorted(starts)
        used = sum(1 for t in starts if t < began + seconds)
        assert used >= 0.8 * qps * seconds, (used, len(refused))
        assert refused and min(refused) >= 1
