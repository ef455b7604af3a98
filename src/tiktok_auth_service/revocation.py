"""Ending grants at TikTok: on request (DELETE), and for orphans, grants that were replaced or
serve nobody any more but whose token TikTok would still accept.

The promise: once a revocation answers, no token we hold that TikTok would accept for that
subject is left unrevoked, and every advertiser whose service ended is listed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from tiktok_auth_service import errors, lease
from tiktok_auth_service.audit import AuditLog
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer, same_secret
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Flow, Grant, GrantStatus
from tiktok_auth_service.refresh import write_account_tokens
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import (
    AccessTokenExpired,
    Endpoint,
    TikTokClient,
    TikTokError,
    Verdict,
)
from tiktok_auth_service.tokens import Caller, authorize_read, read_outcome
from tiktok_auth_service.webhooks import emit

log = logging.getLogger(__name__)

_REVOKED_NOW = Annotated[
    bool, Field(description="False when everything was already revoked (the call is idempotent).")
]


@dataclass(frozen=True, slots=True)
class Revocation:
    """The answer of DELETE /tokens/{advertiser_id}."""

    advertiser_ids: Annotated[
        list[str],
        Field(
            description="Every advertiser whose service ended: TikTok revokes per token, and "
            "every token that still worked for this advertiser was revoked."
        ),
    ]
    status: Literal["revoked"]
    revoked_now: _REVOKED_NOW


@dataclass(frozen=True, slots=True)
class AccountRevocation:
    """The answer of DELETE /tokens/accounts/{open_id}."""

    open_id: str
    status: Literal["revoked"]
    revoked_now: _REVOKED_NOW


def _unconfirmed() -> errors.UpstreamUnavailable:
    # TikTok's answer was logged by the client, and the 503 is in the access log and the audit.
    return errors.UpstreamUnavailable(
        "TikTok did not confirm the revocation; retry later.", retry_after=lease.RETRY_AFTER_SECONDS
    )


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
                    await self._revoke_at_tiktok(grant)
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
                await self._revoke_at_tiktok(grant)
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
        version = leased.version  # _revoke_at_tiktok may refresh (and bump) the detached copy
        try:
            if await self._token_still_serves(leased):
                # TikTok handed this token to a grant that still serves: revoking it would end
                # that service too, so the orphan only retires.
                log.info("grant %s retired: its token lives on with another grant", leased.id)
            else:
                await self._revoke_at_tiktok(leased)
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

    async def _revoke_at_tiktok(self, grant: Grant) -> None:
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
