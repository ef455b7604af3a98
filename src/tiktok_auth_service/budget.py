"""The TikTok app's call budget, one for every caller, server process and replica: TikTok counts
calls per app (contract §8.1), so the budget lives where the replicas meet, in PostgreSQL.

Each budget is one row (`rate_budget`) holding when its next call may start (GCRA's theoretical
arrival time); taking a slot is one statement that advances it (`repository.take_slot`). Calls
are spaced evenly, an interval apart, never in bursts: the whole app's budget (the lower of
TIKTOK_RATE_LIMIT_QPS and TIKTOK_RATE_LIMIT_QPM / 60) and, for the endpoints that have one, the
endpoint's own (TIKTOK_RATE_LIMIT_ENDPOINTS).

In each process, callers queue by name and one dispatcher serves them in turn, taking the slots
of at most `horizon` seconds at a time (one slot at 10 QPS): a caller flooding the budget waits
behind its own calls, not in front of others', and no process holds more than that ahead of the
other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from tiktok_auth_service import errors
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database, lost_connection
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.repository.budget import cool_budget, take_slot

APP = ""  # the scope of the whole app's budget

# After a QPM breach TikTok asks for a five-minute pause (contract §8.1); a throttle soon after
# a cool-down ended (within a minute, TikTok's other window) doubles the last one, up to that.
LONGEST_COOL_DOWN_SECONDS = 300.0
AGAIN_WITHIN_SECONDS = 60.0


@dataclass(eq=False)
class _Waiter:
    endpoint: str
    caller: str
    deadline: float | None
    granted: asyncio.Future[None]
    # The dispatcher is taking a slot for it, or has: within its deadline, if it has one.
    claimed: bool = False
    gone: bool = False  # it stopped waiting


@dataclass(eq=False)
class RateBudget:
    """Starts calls on one grid per budget, `guard / per_second` apart, so that no one-second
    window sees more than `per_second` starts however late the processes wake, with room for
    calls to reach TikTok up to `jitter` seconds later than their neighbours.

    The database's clock orders the slots; this process maps it onto its own clock within the
    round trip of its quickest recent query (`_offset`), starts no sooner than the latest
    moment a slot can mean, and measures lateness from the earliest. A start later than
    `catch_up` after its slot is not made: the slot is given up and
    another taken, so that the i-th start after any start comes at least i intervals less
    `catch_up` after it, and `per_second` intervals less `catch_up` are a second plus `jitter`.
    (The grid itself never moves for a late start: on a busy loop every wake-up is a little
    late, and measuring each interval from the start that really happened let those delays add
    up to a pace 20 % under the budget, bench/sweeps.py.)

    `clock`: a monotonic clock in seconds for every replica of a test (with `sleep`); by
    default the database's clock orders the slots and `time.monotonic` times the waits.
    """

    # 5 % under the budget: room for 40 ms of jitter between a start and its arrival at TikTok
    # (on a loaded 2-core machine 20 ms was not enough: bench/sweeps.py saw 101 in a second).
    guard = 1.05
    catch_up = 0.01
    jitter = guard - 1 - catch_up
    # A process takes at most this much of the budget at once: enough slots that a round trip
    # to the database for each does not bound its pace at high QPS (at 10 a second, one), few
    # enough that other replicas' callers wait for them no longer than for a turn of their own.
    horizon = 0.1

    db: Database
    app_id: str
    qps: float
    qpm: float
    metrics: Metrics
    endpoint_qps: Mapping[str, float] = field(default_factory=dict)
    clock: Callable[[], float] | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _queues: dict[str, deque[_Waiter]] = field(default_factory=dict, init=False)
    _parked: dict[str, float] = field(default_factory=dict, init=False)
    _free_at: float = field(default=-math.inf, init=False)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _dispatcher: asyncio.Task[None] | None = field(default=None, init=False)
    _closed: bool = field(default=False, init=False)
    _waiting: int = field(default=0, init=False)
    # (earliest, latest) offsets of the clocks seen in the last answers (see `_offset`): few
    # enough that a clock slewed by NTP has drifted a fraction of a millisecond since.
    _samples: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=32), init=False
    )

    @classmethod
    def of(cls, settings: Settings, db: Database, metrics: Metrics) -> RateBudget:
        """The budget of the settings' TikTok app."""
        return cls(
            db,
            settings.tiktok_app_id,
            qps=settings.tiktok_rate_limit_qps,
            qpm=settings.tiktok_rate_limit_qpm,
            metrics=metrics,
            endpoint_qps=settings.tiktok_rate_limit_endpoints,
        )

    @property
    def per_second(self) -> float:
        """The app's calls a second, averaged over a minute too."""
        return min(self.qps, self.qpm / 60)

    @property
    def interval(self) -> float:
        return self.guard / self.per_second

    @property
    def waiting(self) -> int:
        """Calls of this process waiting for their start."""
        return self._waiting

    def _now(self) -> float:
        return self.clock() if self.clock is not None else time.monotonic()

    async def acquire(self, endpoint: str, caller: str, *, within: float | None = None) -> None:
        """Wait for one slot in the app's budget (and the endpoint's own, if it has one),
        in turn with the other callers. With `within`: raise RateLimited, taking no slot, at
        once when the slot looks further away than that, or when `within` has passed before
        a slot was taken, with Retry-After the seconds after which it would have been within.

        `endpoint` is TikTok's path below /open_api/v1.3/ ("campaign/get/"); `caller` the API
        key's name, or "worker" for the broker's own calls."""
        if self._closed:
            raise self._refusal("The service is stopping", 1)
        began = self._now()
        if within is not None:
            expected = self._expected(caller, began)
            if expected > within:
                raise self._refusal(f"No slot within {within:g} s", expected - within)
        deadline = None if within is None else began + within
        waiter = _Waiter(endpoint, caller, deadline, asyncio.get_running_loop().create_future())
        self._queues.setdefault(caller, deque()).append(waiter)
        self._arrived.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())
        self._waiting += 1
        try:
            if within is None or self.clock is not None:
                # On a test's clock no timer can run: the dispatcher refuses the call when it
                # reaches it past its deadline.
                await waiter.granted
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(waiter.granted), timeout=within)
                except TimeoutError:
                    if not waiter.claimed:
                        raise self._refusal(
                            f"No slot within {within:g} s", self._expected(caller, self._now())
                        ) from None
                    await waiter.granted
        finally:
            self._waiting -= 1
            waiter.gone = True
            self._unqueue(waiter)
        self.metrics.budget_wait(self._now() - began)

    async def cool_down(self, seconds: float) -> None:
        """TikTok answered 40100/40133: every replica starts no call for `seconds` (a slot
        already taken is kept: at most one a process). Throttled again within a minute after
        the last cool-down ended, for twice as long as that one, up to five minutes; throttled
        during one (calls that started before it), nothing changes."""
        now = None if self.clock is None else self.clock()
        started = await cool_budget(
            self.db,
            self.app_id,
            seconds,
            longest=LONGEST_COOL_DOWN_SECONDS,
            again_within=AGAIN_WITHIN_SECONDS,
            now=now,
        )
        if started is not None:
            self._free_at = max(self._free_at, self._now() + started)
            self.metrics.budget_cool_down()

    def close(self) -> None:
        """Refuse every call still waiting (the service is stopping) and any later one."""
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for queue in self._queues.values():
            for waiter in queue:
                if not waiter.granted.done():
                    waiter.granted.set_exception(self._refusal("The service is stopping", 1))
        self._queues.clear()

    def _refusal(self, why: str, retry_after: float) -> errors.RateLimited:
        self.metrics.budget_refused()
        return errors.RateLimited(
            f"{why}: TikTok's call budget has no free slot sooner.",
            retry_after=max(1, math.ceil(retry_after)),
        )

    def _expected(self, caller: str, now: float) -> float:
        """How long a new call of `caller` would wait, as this process sees it: the app's
        next slot, then one interval for each call served before it in turn."""
        mine = len(self._queues.get(caller, ()))
        ahead = mine + sum(
            min(len(queue), mine + 1) for name, queue in self._queues.items() if name != caller
        )
        return max(0.0, self._free_at - now) + ahead * self.interval

    def _offset(self, sent: float, then: float, received: float) -> tuple[float, float]:
        """The bounds of this process's clock less the database's, from the recent answer that
        came back the soonest: the database read its clock `then` between `sent` and
        `received`, and both clocks tick at one rate."""
        self._samples.append((sent - then, received - then))
        return min(self._samples, key=lambda bounds: bounds[1] - bounds[0])

    def _unqueue(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.caller)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
        if not queue:
            del self._queues[waiter.caller]

    def _next(self, now: float) -> _Waiter | None:
        """The first caller's oldest call whose endpoint is free now."""
        for queue in self._queues.values():
            for waiter in queue:
                if self._parked.get(waiter.endpoint, -math.inf) <= now:
                    return waiter
        return None

    async def _dispatch(self) -> None:
        while self._queues:
            now = self._now()
            waiter = self._next(now)
            if waiter is None:
                # Every call waiting is for an endpoint still busy: wait for the first to be
                # free, or for a new call.
                self._arrived.clear()
                pause = min(self._parked.values()) - now
                arrival = asyncio.ensure_future(self._arrived.wait())
                timer = asyncio.ensure_future(self.sleep(max(0.0, pause)))
                try:
                    await asyncio.wait({arrival, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    arrival.cancel()
                    timer.cancel()
                continue
            try:
                await self._serve(waiter)
            except asyncio.CancelledError:
                self._fail(waiter, self._refusal("The service is stopping", 1))
                raise
            except Exception as exc:
                # This call cannot be paced; the calls after it may be.
                self._fail(waiter, errors.DatabaseUnavailable() if lost_connection(exc) else exc)

    def _fail(self, waiter: _Waiter, error: Exception) -> None:
        self._unqueue(waiter)
        if not waiter.gone and not waiter.granted.done():
            waiter.granted.set_exception(error)

    def _own(self, endpoint: str) -> float | None:
        """The endpoint's own calls a second, if it has a limit of its own."""
        return self.endpoint_qps.get(endpoint, self.endpoint_qps.get("*"))

    def _batch(self, first: _Waiter, now: float) -> list[_Waiter]:
        """`first`, then the calls after it in turn that need the app's budget alone and can
        wait for their slot in the batch, as many as fit in `horizon` seconds."""
        size = max(1, int(self.horizon / self.interval))
        if size == 1 or self._own(first.endpoint) is not None:
            return [first]
        batch = [first]
        queues = list(self._queues.values())
        for depth in range(max(len(queue) for queue in queues)):
            for queue in queues:
                if depth >= len(queue) or queue[depth] is first:
                    continue
                waiter = queue[depth]
                if self._own(waiter.endpoint) is not None:
                    continue
                if waiter.deadline is not None and (
                    waiter.deadline - now < len(batch) * self.interval
                ):
                    return batch  # its slot in this batch would come too late
                batch.append(waiter)
                if len(batch) == size:
                    return batch
        return batch

    async def _serve(self, first: _Waiter) -> None:
        now = self._now()
        if first.deadline is not None and first.deadline < now:
            self._fail(first, self._refusal("No slot in time", self.interval))
            return
        batch = self._batch(first, now)
        taken = await self._take(batch, now)
        if taken is None and len(batch) > 1:
            # Refused for the tightest deadline in the batch: ask for the first call alone.
            batch = [first]
            taken = await self._take(batch, self._now())
        if taken is None:
            return
        at, earliest, latest = taken
        for waiter in batch:
            self._unqueue(waiter)
            queue = self._queues.pop(waiter.caller, None)
            if queue:
                self._queues[waiter.caller] = queue  # its next call waits for others' turns
        self._free_at = at + latest + len(batch) * self.interval
        try:
            for n, waiter in enumerate(batch):
                due = at + n * self.interval
                pause = due + latest - self._now()
                if pause > 0:
                    await self.sleep(pause)
                if waiter.gone:
                    continue
                if self._now() - (due + earliest) > self.catch_up:
                    # Woken too late to start: its neighbours' spacing would not hold.
                    self.metrics.budget_slot_missed()
                    waiter.claimed = False
                    self._queues.setdefault(waiter.caller, deque()).appendleft(waiter)
                    continue
                waiter.granted.set_result(None)
        except asyncio.CancelledError:
            # Stopping: the batch's calls are out of the queues `close` refuses.
            for waiter in batch:
                if not waiter.gone and not waiter.granted.done():
                    self._fail(waiter, self._refusal("The service is stopping", 1))
            raise

    async def _take(self, batch: list[_Waiter], now: float) -> tuple[float, float, float] | None:
        """Take consecutive slots for `batch` (one, if its call has an endpoint limit of its
        own); the first slot and the clock offset's bounds, or None when none was taken."""
        first = batch[0]
        scopes, steps = [APP], [len(batch) * self.interval]
        own = self._own(first.endpoint)
        if own is not None:
            scopes.append(first.endpoint)
            steps.append(self.guard / own)
        within = min(
            (
                waiter.deadline - now - n * self.interval
                for n, waiter in enumerate(batch)
                if waiter.deadline is not None
            ),
            default=None,
        )
        for waiter in batch:
            waiter.claimed = True
        slot = await take_slot(
            self.db,
            self.app_id,
            scopes,
            steps,
            now=None if self.clock is None else now,
            within=within,
        )
        earliest, latest = self._offset(now, slot.now, self._now())
        if slot.taken:
            return slot.at, earliest, latest
        for waiter in batch:
            waiter.claimed = False
        if slot.free_at > slot.at:
            self._parked[first.endpoint] = slot.free_at + latest
        elif len(batch) == 1:
            self._free_at = slot.at + latest
            why = f"No slot within {within:g} s"
            self._fail(first, self._refusal(why, slot.at - slot.now - (within or 0)))
        return None
