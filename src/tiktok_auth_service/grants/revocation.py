"""Ending grants at TikTok: one grant's token (what DELETE, `tokens/revocation.py`, asks for),
and orphans, grants that were replaced or serve nobody any more but whose token TikTok would
still accept (revoked under their lease, retried by the worker)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from pydantic import SecretStr

from tiktok_auth_service import lease
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer, same_secret
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.refresh import write_account_tokens
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import (
    AccessTokenExpired,
    Endpoint,
    TikTokClient,
    TikTokError,
    Verdict,
)

log = logging.getLogger(__name__)


def _copy_tokens(source: Grant, target: Grant) -> None:
    for name in (
        "key_id",
        "access_token_enc",
        "refresh_token_enc",
        "expires_at",
        "refresh_expires_at",
        "refreshed_at",
    ):
        setattr(target, name, getattr(source, name))


@dataclass(eq=False)
class Revoker:
    settings: Settings
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    clock: Clock

    async def revoke_orphans(self, grant_ids: list[uuid.UUID]) -> None:
        """Revoke these orphaned grants now (best effort: the worker retries what fails)."""
        for grant_id in grant_ids:
            now = self.clock.now()
            async with transaction(self.db) as repo:
                grant = await repo.lock_grant(grant_id)
                if (
                    grant is None
                    or grant.status != GrantStatus.ACTIVE
                    or grant.orphaned_at is None
                    or lease.held(grant, now)
                ):
                    continue
                lease.take(grant, now, self.settings.lease_seconds)
            await self.revoke_leased(grant)

    async def revoke_leased(self, leased: Grant) -> bool:
        """Revoke an orphaned grant this process holds the lease of; False if TikTok failed
        (the lease is then released with a backoff, for the worker to try again)."""
        version = leased.version  # revoke_at_tiktok may refresh (and bump) the detached copy
        try:
            if await self._token_still_serves(leased):
                # TikTok handed this token to a grant that still serves: revoking it would end
                # that service too, so the orphan only retires.
                log.info("grant %s retired: its token lives on with another grant", leased.id)
            else:
                await self.revoke_at_tiktok(leased)
        except TikTokError:
            log.info(
                "grant %s: revoking the orphaned token failed; tried again after its backoff",
                leased.id,
                extra=leased.log_fields("revoke_failed", reason="orphaned"),
            )
            revoked = False
        else:
            revoked = True
        now = self.clock.now()
        async with transaction(self.db) as repo:
            try:
                grant = await lease.settle(repo, leased, version)
            except lease.Superseded:
                return revoked
            if revoked:
                await repo.set_grant_status(grant, GrantStatus.REVOKED, now)
            else:
                if leased.version != version:
                    # Revoking refreshed first: keep the rotated pair (sealed for this row),
                    # the only way to reach the live chain on the next try.
                    _copy_tokens(leased, grant)
                lease.keep_for_backoff(grant, now)
        if revoked:
            log.info(
                "grant %s (orphaned) revoked at TikTok",
                leased.id,
                extra=leased.log_fields("revoked", reason="orphaned"),
            )
        return revoked

    async def _token_still_serves(self, orphan: Grant) -> bool:
        """Whether a live advertiser grant holds the same token as `orphan` (TikTok may hand
        the same token back on re-authorization)."""
        if orphan.flow != Flow.ADVERTISER:
            return False
        token = self.sealer.open_access_token(orphan.id, orphan.key_id, orphan.access_token_enc)
        async with transaction(self.db) as repo:
            others = await repo.live_grants_sharing_advertisers(orphan)
        return any(
            same_secret(self.sealer.open_access_token(g.id, g.key_id, g.access_token_enc), token)
            for g in others
        )

    async def revoke_at_tiktok(self, grant: Grant) -> None:
        """Make TikTok stop accepting this grant's token; a token TikTok already refuses
        counts as revoked. Raises TikTokError when TikTok did not confirm."""
        token = SecretStr(
            self.sealer.open_access_token(grant.id, grant.key_id, grant.access_token_enc)
        )
        try:
            if grant.flow == Flow.ADVERTISER:
                await self.tiktok.revoke(token)
            else:
                await self._revoke_account_chain(grant, token)
        except TikTokError as exc:
            if exc.verdict(Endpoint.REVOKE) != Verdict.GONE:
                raise
            log.info(
                "grant %s was already dead at TikTok",
                grant.id,
                extra=grant.log_fields("already_revoked_at_tiktok"),
            )

    async def _revoke_account_chain(self, grant: Grant, token: SecretStr) -> None:
        try:
            await self.tiktok.revoke_account_token(token)
            return
        except AccessTokenExpired:
            pass
        # TikTok revokes an authorization through a live access token only: get one first,
        # and keep the rotated pair on the row in case the revocation then fails.
        refresh_token = self.sealer.open_refresh_token(
            grant.id, grant.key_id, grant.refresh_token_enc
        )
        issued = await self.tiktok.refresh_account_token(refresh_token)
        write_account_tokens(
            grant, issued, self.sealer, self.clock.now(), self.settings.refresh_ahead
        )
        await self.tiktok.revoke_account_token(issued.access_token)
