"""Revoking on request: DELETE /tokens/{advertiser_id} and /tokens/accounts/{open_id}, allowed
to the keys a read is (`reads.authorize_read`), recorded in the audit; the revoking itself at
TikTok is `grants/revocation.py`.

The promise: once a revocation answers, no token we hold that TikTok would accept for that
subject is left unrevoked, and every advertiser whose service ended is listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tiktok_auth_service import errors, lease
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.revocation import Revoker
from tiktok_auth_service.models.grants import GrantStatus
from tiktok_auth_service.ops.audit import AuditLog
from tiktok_auth_service.ops.webhooks import emit
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import TikTokError
from tiktok_auth_service.tokens.reads import Caller, authorize_read, read_outcome
from tiktok_auth_service.tokens.schemas import AccountRevocation, Revocation

log = logging.getLogger(__name__)


def _unconfirmed() -> errors.UpstreamUnavailable:
    # TikTok's answer was logged by the client, and the 503 is in the access log and the audit.
    return errors.UpstreamUnavailable(
        "TikTok did not confirm the revocation; retry later.", retry_after=lease.RETRY_AFTER_SECONDS
    )


@dataclass(eq=False)
class Revocations:
    settings: Settings
    db: Database
    revoker: Revoker
    audit: AuditLog
    clock: Clock

    async def revoke_advertiser(
        self, api_key: str | None, advertiser_id: str, caller: Caller | None = None
    ) -> Revocation:
        """Revoke at TikTok every live token that covers this advertiser: the one serving it
        and any older one TikTok still accepts for it; then mark those grants revoked.

        A key restricted to only some of the advertisers whose service would end gets 403.
        Idempotent. If TikTok fails part-way, what it did revoke is recorded and the answer is
        503, so a retry finishes the job. Raises Unauthenticated, Forbidden, NotConnected,
        UpstreamUnavailable."""
        caller = caller or Caller()
        try:
            revocation = await self._revoke_advertiser(api_key, advertiser_id, caller)
        except BaseException as exc:
            self.audit.record("revoke", advertiser_id, caller.name, read_outcome(exc))
            raise
        self._audit(advertiser_id, caller, revocation.revoked_now)
        return revocation

    def _audit(self, subject: str, caller: Caller, revoked_now: bool) -> None:
        outcome = "revoked" if revoked_now else "already_revoked"
        self.audit.record("revoke", subject, caller.name, outcome)

    async def _revoke_advertiser(
        self, api_key: str | None, advertiser_id: str, caller: Caller
    ) -> Revocation:
        access = await authorize_read(self.db, "advertiser", api_key, advertiser_id, caller)
        failure: TikTokError | None = None
        async with transaction(self.db) as repo:
            serving = await repo.lock_grant_of_advertiser(advertiser_id)
            if serving is None:
                raise errors.NotConnected(f"{advertiser_id} is not connected.")
            grants = {
                grant.id: grant for grant in await repo.lock_live_grants_covering(advertiser_id)
            }
            if serving.status == GrantStatus.ACTIVE:
                grants[serving.id] = serving
            ended_ids = sorted(
                {advertiser_id}
                | {
                    row.advertiser_id
                    for row in await repo.advertisers_of_grants(list(grants) or [serving.id])
                }
            )
            if not access.caller.unrestricted and not set(ended_ids) <= access.caller.advertisers:
                raise errors.Forbidden(
                    "A token that works for this advertiser also serves advertisers outside "
                    "this key's list; revoking it needs a key allowed for all of them."
                )
            now = self.clock.now()
            for grant in grants.values():
                try:
                    await self.revoker.revoke_at_tiktok(grant)
                except TikTokError as exc:
                    failure = exc
                    break
                await repo.set_grant_status(grant, GrantStatus.REVOKED, now)
                emit(repo, self.settings, now, "connection.revoked", grant)
                log.info(
                    "grant %s revoked",
                    grant.id,
                    extra=grant.log_fields("revoked", reason="requested"),
                )
        if failure is not None:
            raise _unconfirmed()
        return Revocation(ended_ids, "revoked", revoked_now=bool(grants))

    async def revoke_account(
        self, api_key: str | None, open_id: str, caller: Caller | None = None
    ) -> AccountRevocation:
        """End the TikTok-account authorization (`tt_user/oauth2/revoke/`), then mark the
        grant revoked. Idempotent; a TikTok failure changes nothing (503).
        Raises Unauthenticated, Forbidden, NotConnected, UpstreamUnavailable."""
        caller = caller or Caller()
        try:
            revocation = await self._revoke_account(api_key, open_id, caller)
        except BaseException as exc:
            self.audit.record("revoke", open_id, caller.name, read_outcome(exc))
            raise
        self._audit(open_id, caller, revocation.revoked_now)
        return revocation

    async def _revoke_account(
        self, api_key: str | None, open_id: str, caller: Caller
    ) -> AccountRevocation:
        await authorize_read(self.db, "tiktok_account", api_key, open_id, caller)
        async with transaction(self.db) as repo:
            grant = await repo.lock_grant_of_account(open_id)
            if grant is None:
                raise errors.NotConnected(f"{open_id} is not connected.")
            if grant.status == GrantStatus.REVOKED:
                return AccountRevocation(open_id, "revoked", revoked_now=False)
            now = self.clock.now()
            if lease.held(grant, now):
                raise errors.UpstreamUnavailable(
                    "A refresh of this token is in flight; retry in a few seconds.",
                    retry_after=5,
                )
            failure: TikTokError | None = None
            try:
                await self.revoker.revoke_at_tiktok(grant)
            except TikTokError as exc:
                # Committed, not rolled back: revoking may have refreshed first, and the rotated
                # pair on the row is the only way left to reach the live chain.
                failure = exc
            else:
                await repo.set_grant_status(grant, GrantStatus.REVOKED, now)
                emit(repo, self.settings, now, "connection.revoked", grant)
        if failure is not None:
            raise _unconfirmed()
        log.info(
            "grant %s revoked", grant.id, extra=grant.log_fields("revoked", reason="requested")
        )
        return AccountRevocation(open_id, "revoked", revoked_now=True)
