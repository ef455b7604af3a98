"""TikTok-account (tt_user) tokens: refresh on demand and ahead of time.

Correctness across replicas rests on the grant's row lock: whoever refreshes holds
`SELECT ... FOR UPDATE`, checks again, calls TikTok and writes the rotated refresh token, the
new access token and both expiries in that same transaction. In front of the lock an in-process
single-flight makes concurrent readers in one replica share one refresh. The background worker
claims due grants with `FOR UPDATE SKIP LOCKED`, one grant per transaction, so a crash loses at
most the grant it was refreshing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenCipher, grant_aad
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.tiktok import AccountGrant, TikTokClient, TikTokError

log = logging.getLogger(__name__)

# After a failed refresh the worker leaves the grant alone this long (on-demand reads still try).
WORKER_RETRY_AFTER = timedelta(seconds=60)
# How long a caller is told to wait when no valid token can be served.
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True, slots=True)
class AccountToken:
    """The body of GET /tokens/accounts/{open_id}. Never carries the refresh token."""

    open_id: str
    access_token: str
    expires_at: datetime
    refresh_expires_at: datetime | None
    scope: list[str]
    status: str


def seal_account_grant(
    grant: Grant | None, granted: AccountGrant, cipher: TokenCipher, now: datetime
) -> Grant:
    """Write a fresh token pair into `grant` (a new grant when None): encrypted, with both
    expiries and a version bump."""
    if grant is None:
        grant = Grant(
            id=uuid.uuid4(),
            flow=Flow.TIKTOK_ACCOUNT,
            open_id=granted.open_id,
            key_id="",
            access_token_enc=b"",
            scope=[],
            status=GrantStatus.ACTIVE,
            version=0,
            created_at=now,
            updated_at=now,
        )
    key_id, access = cipher.encrypt(
        granted.access_token.get_secret_value(), grant_aad(grant.id, "access_token")
    )
    _, refresh = cipher.encrypt(
        granted.refresh_token.get_secret_value(), grant_aad(grant.id, "refresh_token")
    )
    grant.key_id = key_id
    grant.access_token_enc = access
    grant.refresh_token_enc = refresh
    grant.expires_at = granted.expires_at
    grant.refresh_expires_at = granted.refresh_expires_at
    grant.scope = list(granted.scope)
    grant.status = GrantStatus.ACTIVE
    grant.updated_at = now
    grant.refresh_failed_at = None
    grant.version += 1
    return grant


@dataclass(eq=False)
class AccountRefresher:
    settings: Settings
    db: Database
    tiktok: TikTokClient
    cipher: TokenCipher
    clock: Clock
    _inflight: dict[uuid.UUID, tuple[asyncio.Task[AccountToken], timedelta]] = field(
        default_factory=dict
    )

    def status_of(self, refresh_expires_at: datetime | None, now: datetime) -> str:
        """`active`, or `refresh_expiring` when the user must re-authorize soon."""
        warn = timedelta(days=self.settings.refresh_expiry_warning_days)
        if refresh_expires_at is not None and refresh_expires_at - now <= warn:
            return "refresh_expiring"
        return "active"

    def view(self, grant: Grant, now: datetime) -> AccountToken:
        assert grant.open_id is not None and grant.expires_at is not None
        return AccountToken(
            open_id=grant.open_id,
            access_token=self.cipher.decrypt(
                grant.key_id, grant.access_token_enc, grant_aad(grant.id, "access_token")
            ),
            expires_at=grant.expires_at,
            refresh_expires_at=grant.refresh_expires_at,
            scope=list(grant.scope),
            status=self.status_of(grant.refresh_expires_at, now),
        )

    async def valid_token(self, grant_id: uuid.UUID, valid_for: timedelta) -> AccountToken:
        """A token valid for `valid_for`, refreshing once per grant however many ask at once.

        One flight per grant holds one database connection; a reader needing more time than
        the flight under way was started for waits for it to land, then flies again.
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

    def _land(self, grant_id: uuid.UUID, task: asyncio.Task[AccountToken]) -> None:
        flight = self._inflight.get(grant_id)
        if flight is not None and flight[0] is task:
            del self._inflight[grant_id]

    async def _refresh_if_needed(self, grant_id: uuid.UUID, valid_for: timedelta) -> AccountToken:
        async with self.db.session() as session, session.begin():
            grant = await Repository(session).lock_grant(grant_id)
            if grant is None:
                raise errors.NotConnected()
            outcome = await self._refresh_locked(grant, valid_for)
        if isinstance(outcome, errors.ServiceError):
            raise outcome
        return outcome

    async def _refresh_locked(
        self, grant: Grant, valid_for: timedelta
    ) -> AccountToken | errors.ServiceError:
        """With the row locked: check again, refresh if still needed, record the outcome.

        Returns (rather than raises) service errors so the caller's transaction commits the
        state change that goes with them (e.g. `reauthorization_required`).
        """
        now = self.clock.now()
        if grant.status != GrantStatus.ACTIVE:
            return errors.ReauthorizationRequired()
        assert grant.expires_at is not None and grant.refresh_token_enc is not None
        if grant.expires_at - now >= valid_for:
            return self.view(grant, now)  # another reader or replica refreshed meanwhile
        if grant.refresh_expires_at is not None and grant.refresh_expires_at <= now:
            log.warning("grant %s: refresh token expired; re-authorization required", grant.id)
            grant.status = GrantStatus.REAUTHORIZATION_REQUIRED
            grant.updated_at = now
            return errors.ReauthorizationRequired()
        refresh_token = self.cipher.decrypt(
            grant.key_id, grant.refresh_token_enc, grant_aad(grant.id, "refresh_token")
        )
        try:
            refreshed = await self.tiktok.refresh_account_token(SecretStr(refresh_token))
        except TikTokError as exc:
            return self._failed(grant, exc, now)
        seal_account_grant(grant, refreshed, self.cipher, self.clock.now())
        log.info(
            "grant %s refreshed (version %d) request_id=%s",
            grant.id,
            grant.version,
            refreshed.request_id,
        )
        return self.view(grant, now)

    def _failed(
        self, grant: Grant, exc: TikTokError, now: datetime
    ) -> AccountToken | errors.ServiceError:
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
            return self.view(grant, now)  # still valid, if for less time than asked
        return errors.UpstreamUnavailable(
            "TikTok did not refresh the token; retry shortly.", retry_after=RETRY_AFTER_SECONDS
        )

    async def refresh_one_due(self) -> bool:
        """Worker step: refresh the grant that expires soonest among those due. False if none."""
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
                await self._refresh_locked(grant, ahead)
            except Exception:
                # An unexpected failure (e.g. a token that no longer decrypts) is recorded
                # under the same lock, so this grant, first in line, cannot block every pass.
                log.exception("grant %s: refresh failed unexpectedly", grant.id)
                grant.refresh_failed_at = now
        return True


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


class RefreshWorker:
    """Refreshes account tokens before they enter the leeway window."""

    def __init__(self, refresher: AccountRefresher, settings: Settings) -> None:
        self.refresher = refresher
        self.pacer = Pacer(settings.worker_qps)
        self.concurrency = min(settings.worker_qps, settings.worker_concurrency)
        self.poll_seconds = settings.worker_poll_seconds

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
                    if not await self.refresher.refresh_one_due():
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
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
