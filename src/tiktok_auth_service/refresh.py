"""Keeping one TikTok-account (tt_user) token alive: refresh under the grant's row lock.

Correctness across replicas rests on that lock: whoever refreshes holds `SELECT ... FOR
UPDATE`, checks again, calls TikTok and writes the rotated refresh token, the new access token
and both expiries in that same transaction. In front of the lock an in-process single-flight
makes concurrent readers in one replica share one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Grant, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.tiktok import IssuedAccountTokens, TikTokClient, TikTokError

log = logging.getLogger(__name__)

# How long a caller is told to wait when no valid token can be served.
RETRY_AFTER_SECONDS = 30

RefreshOutcome = Grant | errors.ServiceError
"""What a refresh under the row lock ends in: the grant to serve, or the error to answer with.
Returned rather than raised, so the transaction commits the state change that goes with it."""


def write_account_tokens(
    grant: Grant, issued: IssuedAccountTokens, sealer: TokenSealer, now: datetime
) -> None:
    """Put a fresh token pair into `grant`: sealed, both expiries, active, version bumped."""
    sealer.seal(grant, issued.access_token, issued.refresh_token)
    grant.expires_at = issued.expires_at
    grant.refresh_expires_at = issued.refresh_expires_at
    grant.scope = list(issued.scope)
    grant.status = GrantStatus.ACTIVE
    grant.updated_at = now
    grant.refresh_failed_at = None
    grant.version += 1


@dataclass(eq=False)
class AccountRefresher:
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    clock: Clock
    _inflight: dict[uuid.UUID, tuple[asyncio.Task[Grant], timedelta]] = field(default_factory=dict)

    async def valid_grant(self, grant_id: uuid.UUID, valid_for: timedelta) -> Grant:
        """The grant with a token valid for `valid_for` (or at least still valid), refreshing
        once per grant however many ask at once.

        One flight per grant holds one database connection; a reader needing more time than
        the flight under way was started for waits for it to land, then flies again.
        Raises NotConnected, ReauthorizationRequired or UpstreamUnavailable.
        """
        while True:
            flight = self._inflight.get(grant_id)
            if flight is None or flight[0].done():
                task = asyncio.create_task(self._refresh_if_needed(grant_id, valid_for))
                self._inflight[grant_id] = (task, valid_for)
                task.add_done_callback(lambda done: self._land(grant_id, done))
                flight = (task, valid_for)
            task, covers = flight
            if covers >= valid_for:
                # Shielded: a reader that gives up must not cancel the refresh others await.
                return await asyncio.shield(task)
            await asyncio.wait({task})

    def _land(self, grant_id: uuid.UUID, task: asyncio.Task[Grant]) -> None:
        flight = self._inflight.get(grant_id)
        if flight is not None and flight[0] is task:
            del self._inflight[grant_id]

    async def _refresh_if_needed(self, grant_id: uuid.UUID, valid_for: timedelta) -> Grant:
        async with self.db.session() as session, session.begin():
            grant = await Repository(session).lock_grant(grant_id)
            if grant is None:
                raise errors.NotConnected()
            outcome = await self.refresh_locked(grant, valid_for)
        if isinstance(outcome, errors.ServiceError):
            raise outcome
        return outcome

    async def refresh_locked(self, grant: Grant, valid_for: timedelta) -> RefreshOutcome:
        """With the row locked: check again, refresh if still needed, record the outcome."""
        now = self.clock.now()
        if grant.status != GrantStatus.ACTIVE:
            return errors.ReauthorizationRequired()
        assert grant.expires_at is not None
        if grant.expires_at - now >= valid_for:
            return grant  # another reader or replica refreshed meanwhile
        if grant.refresh_expires_at is not None and grant.refresh_expires_at <= now:
            log.warning("grant %s: refresh token expired; re-authorization required", grant.id)
            grant.status = GrantStatus.REAUTHORIZATION_REQUIRED
            grant.updated_at = now
            return errors.ReauthorizationRequired()
        refresh_token = self.sealer.open_refresh_token(grant)
        try:
            issued = await self.tiktok.refresh_account_token(refresh_token)
        except TikTokError as exc:
            return self._failed(grant, exc, now)
        write_account_tokens(grant, issued, self.sealer, self.clock.now())
        log.info(
            "grant %s refreshed (version %d) request_id=%s",
            grant.id,
            grant.version,
            issued.request_id,
        )
        return grant

    def _failed(self, grant: Grant, exc: TikTokError, now: datetime) -> RefreshOutcome:
        assert grant.expires_at is not None
        grant.refresh_failed_at = now
        if exc.grant_is_dead:
            log.warning(
                "grant %s: TikTok refused the refresh (code %s); re-authorization "
                "required request_id=%s",
                grant.id,
                exc.code,
                exc.request_id,
            )
            grant.status = GrantStatus.REAUTHORIZATION_REQUIRED
            grant.updated_at = now
            return errors.ReauthorizationRequired()
        log.warning(
            "grant %s: refresh failed (code %s, retryable=%s) request_id=%s",
            grant.id,
            exc.code,
            exc.retryable,
            exc.request_id,
        )
        if grant.expires_at > now:
            return grant  # still valid, if for less time than asked
        return errors.UpstreamUnavailable(
            "TikTok did not refresh the token; retry shortly.", retry_after=RETRY_AFTER_SECONDS
        )
