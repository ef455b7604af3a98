"""The app's TikTok call budget in this process: one pacer that the worker's calls and the
on-demand checks (`POST /tokens/{advertiser_id}/check`) wait on.

It lives in memory: replicas do not see each other's calls, which is why WORKER_QPS is each
replica's share of the app's limit (and a `serve` splits it between its processes).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from tiktok_auth_service import errors


class Pacer:
    """Starts calls on a grid `1/per_second` apart (plus a small guard), never more than
    `per_second` in any one-second window however the event loop wakes the waiters, with
    room for calls to reach TikTok up to `jitter` seconds later than their neighbours.

    A waiter woken late does not move the grid: on a busy loop every wake-up is a little late,
    and measuring each interval from the start that really happened let those delays add up
    to a pace 20% under the budget (bench/sweeps.py). Nor may a start come more than
    `catch_up` sooner than a full interval after the one before, so the i-th start after any
    start comes at least i intervals less `catch_up` after it: `per_second` intervals less
    `catch_up` are a second plus `jitter`.
    """

    # 5 % under the budget: room for 40 ms of jitter between a start and its arrival at TikTok
    # (on a loaded 2-core machine 20 ms was not enough: bench/sweeps.py saw 101 in a second).
    guard = 1.05
    catch_up = 0.01
    jitter = guard - 1 - catch_up

    def __init__(
        self,
        per_second: float,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_second = per_second
        self.interval = self.guard / per_second
        self._now = now
        self._sleep = sleep
        self._next = 0.0
        self._turn = asyncio.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Calls waiting for their start now."""
        return self._waiting

    async def wait(self, within: float | None = None) -> None:
        """Wait for this call's start. With `within`: only if that start is at most `within`
        seconds away, counting the calls queued before it; otherwise raise RateLimited at
        once, taking no slot, with Retry-After the seconds after which it would be within
        (were nobody else to ask meanwhile)."""
        if within is not None:
            delay = max(self._next, self._now()) + self._waiting * self.interval - self._now()
            if delay > within:
                raise errors.RateLimited(
                    f"The TikTok call budget (WORKER_QPS) has no free slot within {within:g} s.",
                    retry_after=max(1, math.ceil(delay - within)),
                )
        self._waiting += 1
        try:
            async with self._turn:
                delay = self._next - self._now()
                if delay > 0:
                    await self._sleep(delay)  # pacing TikTok calls, the point of this class
                started = self._now()
                self._next = max(
                    self._next + self.interval, started + self.interval - self.catch_up
                )
        finally:
            self._waiting -= 1
