"""Knowing when advertiser tokens die, and keeping each grant's advertiser list current.

Advertiser tokens never expire, so the only way to learn that one died (the advertiser
cancelled, the token was revoked elsewhere) is to ask: `oauth2/advertiser/get/` answers with
the advertisers the token still covers, or 40105. TikTok's sandbox has no such endpoint (and
one ad account, imported by hand): there the check reads a campaign of each advertiser the
grant serves, and the list stays as it is. The check runs under a lease like a refresh: no
row lock or connection is held while TikTok answers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import SecretStr

from tiktok_auth_service import errors, lease
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import AdvertiserStatus, Grant, GrantStatus
from tiktok_auth_service.ops.webhooks import emit
from tiktok_auth_service.repository import Repository, transaction
from tiktok_auth_service.tiktok import AdvertiserInfo, Endpoint, TikTokClient, TikTokError, Verdict

log = logging.getLogger(__name__)

# How long an on-demand check may wait for its slot in the TikTok call budget before it is
# answered 429. The worker alone queues about a second of calls at most (a batch is at most a
# second's worth of the budget), so only checks crowding the budget are refused.
CHECK_SLOT_SECONDS = 2.0


@dataclass(eq=False)
class LivenessChecker:
    settings: Settings
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    clock: Clock
    metrics: Metrics
    _inflight: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.settings.liveness_interval_seconds)

    async def check_now(self, grant_id: uuid.UUID) -> None:
        """Check one grant at once (a consumer just saw TikTok refuse its token), in the TikTok
        call budget the worker spends. Concurrent checks of one grant in this process share
        one; a check that finds one under way elsewhere (another replica, or the worker)
        waits for its verdict instead of asking TikTok again.

        Raises ReauthorizationRequired if the token is dead, RateLimited if the budget has
        no slot within CHECK_SLOT_SECONDS, UpstreamUnavailable if TikTok could not say."""
        flight = self._inflight.get(grant_id)
        if flight is None or flight.done():
            flight = asyncio.create_task(self._check_now(grant_id))
            self._inflight[grant_id] = flight
            flight.add_done_callback(lambda done: self._land(grant_id, done))
        else:
            log.debug(
                "grant %s: a check of it is under way here; sharing its verdict",
                grant_id,
                extra={"event": "liveness_check_shared", "grant_id": str(grant_id)},
            )
        # Shielded: a caller that goes away must not cancel the check others await.
        await asyncio.shield(flight)

    def _land(self, grant_id: uuid.UUID, flight: asyncio.Task[None]) -> None:
        if self._inflight.get(grant_id) is flight:
            del self._inflight[grant_id]

    async def _check_now(self, grant_id: uuid.UUID) -> None:
        """Take the lease, then ask TikTok in the budget. While another holds the lease, wait
        for it to end: a verdict it recorded meanwhile answers this check too."""
        first_look = True
        seen: datetime | None = None
        waiting = False
        while True:
            now = self.clock.now()
            async with transaction(self.db) as repo:
                grant = await repo.lock_grant(grant_id)
                if grant is None or grant.status != GrantStatus.ACTIVE:
                    raise errors.ReauthorizationRequired()
                if first_look:
                    first_look, seen = False, grant.last_checked_at
                elif grant.last_checked_at != seen:
                    return  # a check that ended after this one began found the token alive
                if not lease.held(grant, now):
                    lease.take(grant, now, self.settings.lease_seconds)
                    break
            if not waiting:
                waiting = True
                log.debug(
                    "grant %s: a check of it is under way elsewhere; waiting for its verdict",
                    grant_id,
                    extra=grant.log_fields("liveness_check_waiting"),
                )
            await asyncio.sleep(lease.LEASE_POLL_SECONDS)  # the holder's answer lands in the row
        try:
            alive = await self.check_leased(grant, within=CHECK_SLOT_SECONDS)
        except errors.RateLimited:
            await self._release(grant)  # nothing was asked: the grant is free for others
            raise
        if not alive:
            raise errors.UpstreamUnavailable(
                "TikTok could not confirm the token; retry shortly.",
                retry_after=lease.RETRY_AFTER_SECONDS,
            )

    async def check_leased(self, leased: Grant, *, within: float | None = None) -> bool:
        """Ask TikTok about a grant this process holds the lease of and record the answer;
        False when TikTok could not say (the check is then retried later, with backoff).
        `within`: raise RateLimited, asking nothing, if the budget has no slot that soon."""
        token = SecretStr(
            self.sealer.open_access_token(leased.id, leased.key_id, leased.access_token_enc)
        )
        listed: list[AdvertiserInfo] | None = None
        try:
            if self.settings.tiktok_sandbox:
                for advertiser_id in leased.advertiser_ids:
                    await self.tiktok.check_advertiser(token, advertiser_id, within=within)
            else:
                listed = await self.tiktok.get_advertisers(token, within=within)
        except TikTokError as exc:
            dead = exc.verdict(Endpoint.ADVERTISERS) == Verdict.DEAD
            await self._record(leased, None, exc, dead)
            # TikTok's answer itself was logged by the client; these say what it meant.
            if dead:
                log.warning(
                    "grant %s: TikTok refused its token; re-authorization required",
                    leased.id,
                    extra=leased.log_fields("reauthorization_required", reason="token_refused"),
                )
                self.metrics.liveness_check("reauthorization_required")
                raise errors.ReauthorizationRequired() from None
            log.info(
                "grant %s: liveness check failed; tried again after its backoff",
                leased.id,
                extra=leased.log_fields("liveness_check_failed"),
            )
            self.metrics.liveness_check("failed")
            return False
        await self._record(leased, listed, None, dead=False)
        self.metrics.liveness_check("ok")
        return True

    async def _release(self, leased: Grant) -> None:
        """End a lease under which nothing was asked."""
        async with transaction(self.db) as repo:
            try:
                lease.release(await lease.settle(repo, leased))
            except lease.Superseded:
                return

    async def _record(
        self,
        leased: Grant,
        listed: list[AdvertiserInfo] | None,
        error: TikTokError | None,
        dead: bool,
    ) -> None:
        """Record TikTok's answer: the `error` (`dead`: the token will never work again), or
        success, with the advertisers it `listed` when it was asked for them."""
        now = self.clock.now()
        async with transaction(self.db) as repo:
            try:
                grant = await lease.settle(repo, leased)
            except lease.Superseded:
                return  # revoked or replaced meanwhile: this answer is about the past
            lease.release(grant)
            if dead:
                assert error is not None
                grant.record_failure(now, error.code, error.message)
                grant.status = GrantStatus.REAUTHORIZATION_REQUIRED
                grant.updated_at = now
                grant.last_checked_at = now
                emit(repo, self.settings, now, "connection.reauthorization_required", grant)
            elif error is not None:
                again = lease.record_transient_failure(grant, now, error.code, error.message)
                grant.next_check_at = min(now + self.interval, again)
            else:
                recovered = grant.record_success()
                grant.last_checked_at = now
                grant.next_check_at = now + self.interval
                added, removed = (
                    ([], []) if listed is None else await self._sync(repo, grant, listed, now)
                )
                if added or removed:
                    emit(
                        repo,
                        self.settings,
                        now,
                        "connection.updated",
                        grant,
                        added_advertiser_ids=added,
                        removed_advertiser_ids=removed,
                    )
                if recovered:
                    emit(
                        repo,
                        self.settings,
                        now,
                        "connection.recovered",
                        grant,
                        failures=recovered,
                    )

    async def _sync(
        self, repo: Repository, grant: Grant, listed: list[AdvertiserInfo], now: datetime
    ) -> tuple[list[str], list[str]]:
        """Make the grant serve what TikTok lists: removed advertisers stop being served
        (409), new ones are served unless a live grant already serves them, names follow.
        Returns the advertisers it started and stopped serving."""
        listed_ids = {info.advertiser_id for info in listed}
        if sorted(listed_ids) != sorted(grant.advertiser_ids):
            grant.advertiser_ids = sorted(listed_ids)
            grant.updated_at = now
        rows = await repo.advertisers_of_grants([grant.id])
        served = {row.advertiser_id for row in rows}
        # Read before the status updates below, which the session's rows follow.
        active = {r.advertiser_id for r in rows if r.status == AdvertiserStatus.ACTIVE}
        gone = [r.advertiser_id for r in rows if r.advertiser_id not in listed_ids]
        back = [
            r.advertiser_id
            for r in rows
            if r.advertiser_id in listed_ids and r.status == AdvertiserStatus.REMOVED
        ]
        await repo.set_advertiser_status(grant.id, gone, AdvertiserStatus.REMOVED, now)
        await repo.set_advertiser_status(grant.id, back, AdvertiserStatus.ACTIVE, now)
        new = await self._claimable(repo, grant, sorted(listed_ids - served))
        await repo.assign_advertisers(grant.id, new, now)
        if gone or new:
            log.info(
                "grant %s: advertiser list synced (+%d -%d)",
                grant.id,
                len(new),
                len(gone),
                extra=grant.log_fields(
                    "advertisers_synced", added_advertiser_ids=new, removed_advertiser_ids=gone
                ),
            )
        await repo.set_advertiser_names(
            grant.id, {info.advertiser_id: info.advertiser_name for info in listed}, now
        )
        if not (active - set(gone)) | set(back) | set(new):
            grant.orphaned_at = now  # serves nobody now: its token is revoked by the worker
        return sorted({*new, *back}), sorted(set(gone) & active)

    async def _claimable(
        self, repo: Repository, grant: Grant, advertiser_ids: list[str]
    ) -> list[str]:
        """Of these newly listed advertisers, the ones this grant may start serving: not
        served by another live grant, and within the opening key's list if it is restricted."""
        if not advertiser_ids:
            return []
        if grant.api_client_id is not None:
            client = await repo.api_key(grant.api_client_id)
            if client is not None and not client.unrestricted:
                allowed = set(client.allowed_advertiser_ids)
                advertiser_ids = [a for a in advertiser_ids if a in allowed]
        rows = await repo.lock_advertisers(advertiser_ids)
        live = {
            grant.id
            for grant in await repo.lock_grants(row.grant_id for row in rows)
            if grant.status == GrantStatus.ACTIVE
        }
        taken = {
            row.advertiser_id
            for row in rows
            if row.grant_id in live and row.status == AdvertiserStatus.ACTIVE
        }
        return [a for a in advertiser_ids if a not in taken]
