"""Keeping one TikTok-account (tt_user) token alive.

Across replicas a lease does what a row lock held over the TikTok call used to do, without
holding a connection or a lock while TikTok takes its time: a short transaction locks the row,
checks again and takes the lease (`lease_until`, version bumped); the refresh call runs with
nothing held; a second short transaction writes the rotated refresh token, the new access
token and both expiries, but only if the row still carries the version we leased. Nobody else
refreshes while the lease lives, so a refresh token is sent to TikTok once. In front, an
in-process single-flight makes concurrent readers in one replica share one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import SecretStr

from tiktok_auth_service import errors, lease
from tiktok_auth_service.backoff import Backoff
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database, lost_connection
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Grant, GrantStatus
from tiktok_auth_service.ops.webhooks import emit
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import (
    Endpoint,
    IssuedAccountTokens,
    TikTokClient,
    TikTokError,
    Verdict,
)

log = logging.getLogger(__name__)

# What `last_failure.message` says when the failure was found here, not told by TikTok.
_EXPIRED = "The refresh token expired; the user must authorize again."
_UNREADABLE = "The stored refresh token does not decrypt with TOKEN_ENCRYPTION_KEYS."

# Between tries to save a refreshed pair while the database is away.
_SAVE_BACKOFF = Backoff(base=0.2, cap=5.0)


def backing_off(refresh_failed_at: datetime | None, failures: int | None, now: datetime) -> bool:
    """True while a failed refresh's backoff runs: reads and the worker both wait it out."""
    if refresh_failed_at is None:
        return False
    return now < refresh_failed_at + lease.failure_backoff(failures or 1)


def refresh_need(
    valid_for: timedelta, refreshed_at: datetime | None, expires_at: datetime
) -> timedelta:
    """How much validity to insist on: what was asked, but never more than half the token's
    lifetime, so a short `expires_in` from TikTok cannot turn every read into a refresh."""
    if refreshed_at is None:
        return valid_for
    return min(valid_for, (expires_at - refreshed_at) / 2)


def write_account_tokens(
    grant: Grant, issued: IssuedAccountTokens, sealer: TokenSealer, now: datetime, ahead: timedelta
) -> int:
    """Put a fresh token pair into `grant`: sealed, both expiries, when the worker should
    refresh it next (`ahead` of expiry, but not before half its lifetime), active, version
    bumped, lease and failures cleared. Returns how many refreshes had failed in a row
    before (`Grant.record_success`)."""
    sealer.seal(grant, issued.access_token, issued.refresh_token)
    lifetime = issued.expires_at - now
    grant.expires_at = issued.expires_at
    grant.refresh_expires_at = issued.refresh_expires_at
    grant.refreshed_at = now
    grant.refresh_due_at = issued.expires_at - min(ahead, lifetime / 2)
    grant.scope = list(issued.scope)
    grant.status = GrantStatus.ACTIVE
    grant.updated_at = now
    grant.refresh_failed_at = None
    lease.release(grant)
    return grant.record_success()


@dataclass(eq=False)
class AccountRefresher:
    settings: Settings
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    clock: Clock
    metrics: Metrics
    _inflight: dict[uuid.UUID, tuple[asyncio.Task[Grant], timedelta]] = field(default_factory=dict)

    async def valid_grant(self, grant_id: uuid.UUID, need: timedelta) -> Grant:
        """The grant after making its token valid for `need` if it can: refreshed once per
        grant however many ask at once. The token may still fall short when another process
        holds the lease or a failed refresh is backing off; the caller decides what to serve.

        A reader needing more time than the flight under way was started for waits for it to
        land, then flies again. Raises NotConnected, ReauthorizationRequired, TokenUnreadable.
        """
        while True:
            flight = self._inflight.get(grant_id)
            if flight is None or flight[0].done():
                task = asyncio.create_task(self._refresh_if_needed(grant_id, need))
                self._inflight[grant_id] = (task, need)
                task.add_done_callback(lambda done: self._land(grant_id, done))
                flight = (task, need)
            task, covers = flight
            if covers >= need:
                # Shielded: a reader that gives up must not cancel the refresh others await.
                return await asyncio.shield(task)
            await asyncio.wait({task})

    async def finish_flights(self) -> None:
        """Wait for the refreshes in flight, for a clean stop: a reader that stopped waiting
        left its refresh running, and one cut short after TikTok rotated the refresh token
        would lose the grant. Each is bounded by its TikTok call and its save."""
        flights = [task for task, _ in self._inflight.values()]
        if flights:
            log.info(
                "waiting for %d refresh(es) in flight before stopping",
                len(flights),
                extra={"event": "refreshes_finishing", "count": len(flights)},
            )
            await asyncio.wait(flights)

    def _land(self, grant_id: uuid.UUID, task: asyncio.Task[Grant]) -> None:
        flight = self._inflight.get(grant_id)
        if flight is not None and flight[0] is task:
            del self._inflight[grant_id]

    async def _refresh_if_needed(self, grant_id: uuid.UUID, need: timedelta) -> Grant:
        patience = time.monotonic() + self.settings.lease_seconds
        while True:
            now = self.clock.now()
            async with transaction(self.db) as repo:
                grant = await repo.lock_grant(grant_id)
                if grant is None:
                    raise errors.NotConnected()
                if grant.status != GrantStatus.ACTIVE or grant.open_id is None:
                    raise errors.ReauthorizationRequired()
                assert grant.expires_at is not None
                wanted = refresh_need(need, grant.refreshed_at, grant.expires_at)
                if grant.expires_at - now >= wanted or backing_off(
                    grant.refresh_failed_at, grant.failures, now
                ):
                    return grant  # refreshed meanwhile, or a failure is backing off
                busy = lease.held(grant, now)
                if busy and time.monotonic() > patience:
                    return grant
                if not busy:
                    lease.take(grant, now, self.settings.lease_seconds)
            if not busy:
                return await self.refresh_leased(grant)
            # Another process is refreshing: its answer lands in the row (readers stop
            # waiting after REFRESH_WAIT_SECONDS; a lease that runs out is taken over).
            await asyncio.sleep(lease.LEASE_POLL_SECONDS)

    async def refresh_leased(self, grant: Grant) -> Grant:
        """Refresh a grant this process holds the lease of (taken at `grant.version`) and
        return the row as it then is. Raises ReauthorizationRequired when the grant died."""
        now = self.clock.now()
        if grant.refresh_expires_at is not None and grant.refresh_expires_at <= now:
            log.warning(
                "grant %s: refresh token expired; re-authorization required",
                grant.id,
                extra=grant.log_fields("reauthorization_required", reason="refresh_token_expired"),
            )
            return await self._record_failure(grant, None, reason=_EXPIRED)
        try:
            refresh_token = self.sealer.open_refresh_token(
                grant.id, grant.key_id, grant.refresh_token_enc
            )
        except errors.TokenUnreadable:
            log.error(
                "grant %s: the stored refresh token does not decrypt",
                grant.id,
                extra=grant.log_fields("refresh_failed", reason="token_unreadable"),
            )
            self.metrics.refresh("unreadable")
            await self._record_failure(grant, None, dead=False, reason=_UNREADABLE)
            raise
        try:
            issued = await self.tiktok.refresh_account_token(refresh_token)
        except TikTokError as exc:
            return await self._record_failure(grant, exc)
        return await self._save(grant, issued)

    async def _save(self, leased: Grant, issued: IssuedAccountTokens) -> Grant:
        """Write the rotated pair. TikTok has retired the old refresh token by now, so a
        database blip must not lose the new one: the write is retried (guarded by the leased
        version) while the lease keeps everyone else away."""
        deadline = time.monotonic() + self.settings.lease_seconds / 2
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._write_refreshed(leased, issued)
            except Exception as exc:
                if not lost_connection(exc):
                    raise
                delay = _SAVE_BACKOFF.delay(attempt)
                if time.monotonic() + delay > deadline:
                    log.error(
                        "grant %s: the refreshed tokens could not be saved (%s); the next "
                        "refresh will need re-authorization",
                        leased.id,
                        type(exc).__name__,
                        extra=leased.log_fields("refresh_failed", reason="database_unavailable"),
                    )
                    self.metrics.refresh("save_failed")
                    raise errors.DatabaseUnavailable() from exc
                log.warning(
                    "grant %s: saving the refreshed tokens failed (%s); retrying",
                    leased.id,
                    type(exc).__name__,
                )
                await asyncio.sleep(delay)  # backoff while the database comes back

    async def _write_refreshed(self, leased: Grant, issued: IssuedAccountTokens) -> Grant:
        async with transaction(self.db) as repo:
            try:
                grant: Grant | None = await lease.settle(repo, leased)
            except lease.Superseded:
                grant = None
            stale = grant is None
            if grant is not None:
                now = self.clock.now()
                recovered = write_account_tokens(
                    grant, issued, self.sealer, now, self.settings.refresh_ahead
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
                ends = grant.refresh_expires_at
                warn = timedelta(days=self.settings.refresh_expiry_warning_days)
                if grant.expiry_warned_at is None and ends is not None and ends - now <= warn:
                    # Once per grant: the user must authorize again before `ends`.
                    grant.expiry_warned_at = now
                    emit(
                        repo,
                        self.settings,
                        now,
                        "refresh_token.expiring",
                        grant,
                        refresh_expires_at=ends.isoformat(),
                    )
        if stale:
            # Revoked or re-authorized while TikTok was refreshing: the new pair is unwanted.
            log.warning(
                "grant %s changed during its refresh; revoking the new tokens",
                leased.id,
                extra=leased.log_fields("refresh_superseded"),
            )
            self.metrics.refresh("superseded")
            await self._revoke_quietly(issued.access_token)
            raise errors.ReauthorizationRequired()
        assert grant is not None
        log.info(
            "grant %s refreshed (version %d) request_id=%s",
            grant.id,
            grant.version,
            issued.request_id,
            extra={
                **grant.log_fields("refreshed"),
                "version": grant.version,
                "tiktok_request_id": issued.request_id,
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            },
        )
        self.metrics.refresh("refreshed")
        return grant

    async def _record_failure(
        self, leased: Grant, exc: TikTokError | None, *, dead: bool = True, reason: str = ""
    ) -> Grant:
        """Release the lease and record why. `exc` None: the refresh token expired (dead) or
        could not be read (`dead=False`), as `reason` says."""
        now = self.clock.now()
        dead = dead and (exc is None or exc.verdict(Endpoint.REFRESH) == Verdict.DEAD)
        async with transaction(self.db) as repo:
            try:
                grant = await lease.settle(repo, leased)
            except lease.Superseded:
                self.metrics.refresh("superseded")
                raise errors.ReauthorizationRequired() from None
            lease.release(grant)
            grant.updated_at = now
            code = None if exc is None else exc.code
            message = reason if exc is None else exc.message
            if dead:
                grant.record_failure(now, code, message)
                grant.status = GrantStatus.REAUTHORIZATION_REQUIRED
                emit(repo, self.settings, now, "connection.reauthorization_required", grant)
            else:
                grant.refresh_failed_at = now
                grant.refresh_due_at = lease.record_transient_failure(grant, now, code, message)
                emit(
                    repo,
                    self.settings,
                    now,
                    "refresh.failed",
                    grant,
                    tiktok_code=code,
                    failures=grant.failures,
                )
        if exc is None and dead:
            self.metrics.refresh("reauthorization_required")
        elif exc is not None and dead:
            # TikTok's answer itself was logged by the client; this says what it meant.
            log.warning(
                "grant %s: TikTok refused the refresh; re-authorization required",
                grant.id,
                extra=leased.log_fields("reauthorization_required", reason="refresh_refused"),
            )
            self.metrics.refresh("reauthorization_required")
        elif exc is not None:
            log.info(
                "grant %s: refresh failed (%d in a row); tried again after its backoff",
                grant.id,
                grant.failures,
                extra=leased.log_fields("refresh_failed", failures=grant.failures),
            )
            self.metrics.refresh("failed")
        if dead:
            raise errors.ReauthorizationRequired()
        return grant

    async def _revoke_quietly(self, access_token: SecretStr) -> None:
        try:
            await self.tiktok.revoke_account_token(access_token)
        except TikTokError:
            log.warning("revoking unwanted refreshed tokens failed")
