"""Serving tokens to internal callers, and checking them on request.

A token read is the hot path: the token cache (`cache.py`), or else one query, answers who is
asking, whether they may (`reads.py`), and the sealed token; the answer is one of the bodies
of `schemas.py`. An account token about to expire is refreshed first (`grants/refresh.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer, digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.liveness import LivenessChecker
from tiktok_auth_service.grants.refresh import AccountRefresher, backing_off, refresh_need
from tiktok_auth_service.lease import RETRY_AFTER_SECONDS
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.ops.audit import AuditLog
from tiktok_auth_service.repository import GrantRow, TokenRow
from tiktok_auth_service.tokens.cache import TokenCache
from tiktok_auth_service.tokens.reads import (
    Caller,
    authorize_read,
    authorized,
    read_outcome,
    servable,
)
from tiktok_auth_service.tokens.schemas import AccountStatus, AccountToken, AdvertiserToken


@dataclass(eq=False)
class TokenService:
    settings: Settings
    db: Database
    sealer: TokenSealer
    refresher: AccountRefresher
    liveness: LivenessChecker
    audit: AuditLog
    clock: Clock
    metrics: Metrics
    cache: TokenCache

    async def get_advertiser_token(
        self, api_key: str | None, advertiser_id: str, caller: Caller | None = None
    ) -> AdvertiserToken:
        """The token serving this advertiser; counted in the metrics by outcome.

        Raises Unauthenticated, Forbidden, NotConnected, ReauthorizationRequired,
        TokenUnreadable."""
        caller = caller or Caller()
        try:
            token = await self._advertiser_token(api_key, advertiser_id, caller)
        except BaseException as exc:
            self._read("advertiser", advertiser_id, caller, read_outcome(exc))
            raise
        self._read("advertiser", advertiser_id, caller, "served")
        return token

    def _read(self, kind: str, subject: str, caller: Caller, outcome: str) -> None:
        """Count a read in the metrics and record it in the audit."""
        self.metrics.token_read(kind, outcome)
        self.audit.record("read", subject, caller.name, outcome)

    def cached_advertiser_token(
        self, api_key: str | None, advertiser_id: str, caller: Caller
    ) -> AdvertiserToken | None:
        """The hot path's answer, when the cache holds all of it: the token, counted and
        audited as `served`. None when it does not (a miss, or any error): then
        `get_advertiser_token` answers, and counts, as always. No await: a hit never yields."""
        row = self.cache.lookup("advertiser", digest(api_key), advertiser_id) if api_key else None
        if row is None:
            return None
        try:
            token = self._advertiser_answer(
                advertiser_id, authorized(row, "advertiser", advertiser_id, caller)
            )
        except errors.ServiceError:
            return None
        self._read("advertiser", advertiser_id, caller, "served")
        return token

    async def _advertiser_token(
        self, api_key: str | None, advertiser_id: str, caller: Caller | None
    ) -> AdvertiserToken:
        access = await authorize_read(
            self.db, "advertiser", api_key, advertiser_id, caller, self.cache
        )
        return self._advertiser_answer(advertiser_id, access)

    def _advertiser_answer(self, advertiser_id: str, access: TokenRow) -> AdvertiserToken:
        grant = servable(access)
        return AdvertiserToken(
            advertiser_id=advertiser_id,
            access_token=self._access_token(grant),
            expires_at=grant.expires_at,
            scope=grant.scope,
            status="active",
            last_checked_at=grant.last_checked_at,
            connected_by=grant.connected_by,
            end_user=grant.end_user,
            tags=grant.tags,
        )

    async def check_advertiser_token(
        self, api_key: str | None, advertiser_id: str, caller: Caller | None = None
    ) -> AdvertiserToken:
        """Ask TikTok now whether the token serving this advertiser still works (and sync its
        advertiser list), then answer as a read does. Counted as a liveness check, not a
        read.

        Raises what get_advertiser_token raises, and UpstreamUnavailable when TikTok could
        not say."""
        caller = caller or Caller()
        try:
            access = await authorize_read(self.db, "advertiser", api_key, advertiser_id, caller)
            grant = servable(access)
            await self.liveness.check_now(grant.grant_id)
            token = await self._advertiser_token(api_key, advertiser_id, None)
        except BaseException as exc:
            self.audit.record("check", advertiser_id, caller.name, read_outcome(exc))
            raise
        self.audit.record("check", advertiser_id, caller.name, "served")
        return token

    async def get_account_token(
        self,
        api_key: str | None,
        open_id: str,
        min_valid_for: int | None,
        caller: Caller | None = None,
    ) -> AccountToken:
        """A TikTok-account token valid long enough (see `_account_token_read`); counted in the
        metrics by outcome: `served` (the stored token), `refreshed` (served after a
        refresh), `served_stored` (the refresh did not land in time or is backing off; the
        stored, still valid token was served), or the error's code."""
        caller = caller or Caller()
        try:
            token, outcome = await self._account_token_read(api_key, open_id, min_valid_for, caller)
        except BaseException as exc:
            self._read("tiktok_account", open_id, caller, read_outcome(exc))
            raise
        self._read("tiktok_account", open_id, caller, outcome)
        return token

    async def _account_token_read(
        self,
        api_key: str | None,
        open_id: str,
        min_valid_for: int | None,
        caller: Caller | None,
    ) -> tuple[AccountToken, str]:
        """A TikTok-account token valid for at least the leeway (or `min_valid_for` seconds),
        refreshed first when it would not be.

        A refresh is waited for at most REFRESH_WAIT_SECONDS (it goes on in the background);
        then the stored token is served while it is still valid. A grant whose refresh just
        failed is not refreshed again before its backoff ends.
        Raises what get_advertiser_token raises, and UpstreamUnavailable when no valid token
        can be served."""
        row = servable(
            await authorize_read(self.db, "tiktok_account", api_key, open_id, caller, self.cache)
        )
        assert row.expires_at is not None
        valid_for = timedelta(seconds=max(self.settings.refresh_leeway_seconds, min_valid_for or 0))
        now = self.clock.now()
        need = refresh_need(valid_for, row.refreshed_at, row.expires_at)
        if row.expires_at - now >= need:
            return self._account_token_from_row(open_id, row, now), "served"
        if not backing_off(row.refresh_failed_at, row.failures, now):
            try:
                grant = await asyncio.wait_for(
                    self.refresher.valid_grant(row.grant_id, need),
                    timeout=self.settings.refresh_wait_seconds,
                )
            except TimeoutError:
                pass  # the refresh goes on in the background; serve what is stored
            else:
                if grant.expires_at is not None and grant.expires_at > self.clock.now():
                    refreshed = grant.refreshed_at != row.refreshed_at
                    return self._account_token(grant), "refreshed" if refreshed else "served_stored"
        if row.expires_at > self.clock.now():
            return self._account_token_from_row(open_id, row, now), "served_stored"
        raise errors.UpstreamUnavailable(
            "TikTok did not refresh the token in time; retry shortly.",
            retry_after=RETRY_AFTER_SECONDS,
        )

    def _access_token(self, row: GrantRow) -> str:
        return self.sealer.open_access_token(row.grant_id, row.key_id, row.access_token_enc)

    def _account_token_from_row(self, open_id: str, row: GrantRow, now: datetime) -> AccountToken:
        assert row.expires_at is not None
        return AccountToken(
            open_id=open_id,
            access_token=self._access_token(row),
            expires_at=row.expires_at,
            refresh_expires_at=row.refresh_expires_at,
            scope=row.scope,
            status=self._account_status(row.refresh_expires_at, now),
            connected_by=row.connected_by,
            end_user=row.end_user,
            tags=row.tags,
        )

    def _account_token(self, grant: Grant) -> AccountToken:
        assert grant.open_id is not None and grant.expires_at is not None
        return AccountToken(
            open_id=grant.open_id,
            access_token=self.sealer.open_access_token(
                grant.id, grant.key_id, grant.access_token_enc
            ),
            expires_at=grant.expires_at,
            refresh_expires_at=grant.refresh_expires_at,
            scope=list(grant.scope),
            status=self._account_status(grant.refresh_expires_at, self.clock.now()),
            connected_by=grant.connected_by,
            end_user=grant.end_user,
            tags=grant.tags,
        )

    def _account_status(self, refresh_expires_at: datetime | None, now: datetime) -> AccountStatus:
        """`active`, or `refresh_expiring` when the user must re-authorize soon."""
        warn = timedelta(days=self.settings.refresh_expiry_warning_days)
        if refresh_expires_at is not None and refresh_expires_at - now <= warn:
            return "refresh_expiring"
        return "active"
