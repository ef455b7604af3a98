"""Background work: the worker claims grants that need TikTok and handles them, each call in
the app's TikTok call budget (`budget.py`, as the caller "worker"); then it prunes the audit.
Webhooks are delivered beside it (webhooks.WebhookSender), so a slow receiver delays none of
this.

Three kinds of work, most urgent first: account tokens due for refresh, orphaned grants to
revoke, advertiser tokens due for a liveness check. Grants are claimed in small batches with
`FOR UPDATE SKIP LOCKED` and a lease, so replicas share the work without doing it twice, no row
lock is held while TikTok answers, and a crash leaves only leases that run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from tiktok_auth_service import errors
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.liveness import LivenessChecker
from tiktok_auth_service.grants.refresh import AccountRefresher
from tiktok_auth_service.grants.revocation import Revoker
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.ops.audit import AuditLog
from tiktok_auth_service.repository import Claim, transaction

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Worker:
    """Refreshes account tokens before they enter the leeway window, revokes orphaned
    grants, and checks advertiser tokens every LIVENESS_INTERVAL_SECONDS."""

    settings: Settings
    db: Database
    refresher: AccountRefresher
    liveness: LivenessChecker
    revoker: Revoker
    audit: AuditLog
    budget: RateBudget
    clock: Clock
    metrics: Metrics

    @property
    def batch(self) -> int:
        """Grants claimed at once: as many as may be in flight, and no more than a second's
        worth of the app's budget."""
        return max(1, min(int(self.budget.per_second), self.settings.worker_concurrency))

    async def claim(self, kind: Claim) -> list[Grant]:
        now = self.clock.now()
        async with transaction(self.db) as repo:
            return await repo.claim(
                kind, now, now + timedelta(seconds=self.settings.lease_seconds), self.batch
            )

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Handle every grant that is due now (or until `stop`); returns how many."""
        handled = 0
        while stop is None or not stop.is_set():
            for kind in Claim:
                grants = await self.claim(kind)
                if grants:
                    break
            else:
                return handled
            async with asyncio.TaskGroup() as group:
                for grant in grants:
                    group.create_task(self._handle(kind, grant, stop))
            handled += len(grants)
        return handled

    async def _handle(self, kind: Claim, grant: Grant, stop: asyncio.Event | None) -> None:
        # Never raises into the group: that would cancel the other calls, possibly between
        # TikTok rotating a refresh token and the new one being written.
        if stop is not None and stop.is_set():
            return  # the lease runs out and another pass takes the grant
        try:
            if kind == Claim.REFRESH:
                refreshed = await self.refresher.refresh_leased(grant)
                done = refreshed.failures == 0
            elif kind == Claim.CHECK:
                done = await self.liveness.check_leased(grant)
            else:
                done = await self.revoker.revoke_leased(grant)
        except errors.ReauthorizationRequired:
            # Recorded and logged where it was found.
            self.metrics.worker_task(kind, "reauthorization_required")
        except errors.RateLimited:
            return  # stopping before its slot came: the lease runs out for another pass
        except Exception:
            self.metrics.worker_task(kind, "error")
            log.exception(
                "grant %s: %s failed unexpectedly",
                grant.id,
                kind,
                extra={"event": "worker_task_failed", "grant_id": str(grant.id), "kind": kind},
            )
        else:
            self.metrics.worker_task(kind, "done" if done else "failed")

    async def run(self, stop: asyncio.Event) -> None:
        """Drain and prune, then wait for the next poll (or stop), until `stop` is set."""
        while not stop.is_set():
            try:
                await self.drain(stop)
                await self.audit.prune(self.clock.now())
            except Exception:
                log.exception("worker pass failed; trying again at the next poll")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_seconds)
