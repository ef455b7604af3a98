"""Background work: the refresh worker claims due TikTok-account grants and refreshes them
before they enter the leeway window, paced to TikTok's budget.

Grants are claimed with `FOR UPDATE SKIP LOCKED`, one grant per transaction, so replicas share
the work without doing it twice and a crash loses at most the grant it was refreshing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.refresh import AccountRefresher
from tiktok_auth_service.repository import Repository

log = logging.getLogger(__name__)

# After a failed refresh the worker leaves the grant alone this long (on-demand reads still try).
WORKER_RETRY_AFTER = timedelta(seconds=60)


class Pacer:
    """At most `per_second` starts in any window of a little over one second.

    The guard keeps network jitter from bunching calls into one of TikTok's one-second windows.
    """

    window = 1.05

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            while len(self._starts) >= self.per_second:
                wait = self._starts[0] + self.window - time.monotonic()
                if wait <= 0:
                    self._starts.popleft()
                else:
                    await asyncio.sleep(wait)  # pacing TikTok calls, the point of this class
            self._starts.append(time.monotonic())


@dataclass(eq=False)
class RefreshWorker:
    """Refreshes account tokens before they enter the leeway window."""

    settings: Settings
    db: Database
    refresher: AccountRefresher
    pacer: Pacer
    clock: Clock

    @property
    def concurrency(self) -> int:
        return min(self.settings.worker_qps, self.settings.worker_concurrency)

    async def refresh_one_due(self) -> bool:
        """Refresh the grant that expires soonest among those due. False if none is."""
        now = self.clock.now()
        ahead = timedelta(
            seconds=self.settings.refresh_leeway_seconds
            + self.settings.worker_refresh_ahead_seconds
        )
        async with self.db.session() as session, session.begin():
            grant = await Repository(session).claim_due_account_grant(
                due_before=now + ahead, failed_before=now - WORKER_RETRY_AFTER
            )
            if grant is None:
                return False
            try:
                await self.refresher.refresh_locked(grant, ahead)
            except Exception:
                # An unexpected failure (e.g. a token that no longer decrypts) is recorded
                # under the same lock, so this grant, first in line, cannot block every pass.
                log.exception("grant %s: refresh failed unexpectedly", grant.id)
                grant.refresh_failed_at = now
        return True

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Refresh every grant that is due now (or until `stop`); returns how many."""
        handled = 0

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        async def lane() -> None:
            # A lane never raises into the group: that would cancel the other lanes, possibly
            # between TikTok rotating a refresh token and the new one being written.
            nonlocal handled
            while not stopping():
                await self.pacer.wait()
                if stopping():
                    return
                try:
                    if not await self.refresh_one_due():
                        return
                except Exception:
                    log.exception("refresh worker lane stopped; the next pass starts it again")
                    return
                handled += 1

        async with asyncio.TaskGroup() as lanes:
            for _ in range(self.concurrency):
                lanes.create_task(lane())
        return handled

    async def run(self, stop: asyncio.Event) -> None:
        """Drain, then wait for the next poll (or stop), until `stop` is set."""
        while not stop.is_set():
            try:
                await self.drain(stop)
            except Exception:
                log.exception("refresh worker pass failed; trying again at the next poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_seconds)
