"""The Marketing API flow: one long-term token for the advertisers the person picked."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.authorization.flows import Connected, Origin, new_grant
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer, same_secret
from tiktok_auth_service.db import Database
from tiktok_auth_service.models.grants import Flow, GrantStatus
from tiktok_auth_service.ops.webhooks import emit
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import (
    IssuedAdvertiserToken,
    TikTokClient,
    TikTokError,
)

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AdvertiserFlow:
    """Marketing API ad accounts: one long-term token for the advertisers the user picked."""

    settings: Settings
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    clock: Clock
    flow: Flow = Flow.ADVERTISER

    def consent_url(self, state: str) -> str:
        query = {
            "app_id": self.settings.tiktok_app_id,
            "redirect_uri": self.settings.tiktok_redirect_uri,
            "state": state,
        }
        return f"{self.settings.tiktok_auth_url}?{urlencode(query)}"

    async def exchange(self, code: str) -> IssuedAdvertiserToken:
        return await self.tiktok.exchange_code(code)

    async def discard(self, issued: IssuedAdvertiserToken) -> None:
        await self.tiktok.revoke(issued.access_token)

    async def store(self, issued: IssuedAdvertiserToken, origin: Origin) -> Connected:
        """The newest grant serves its advertisers; grants left serving nobody are orphaned,
        except one whose token TikTok handed back again, which retires quietly."""
        grant_id, connected = await self._keep(issued, origin)
        if connected.advertiser_ids:
            await self._store_names(grant_id, issued)
        return connected

    async def import_token(
        self, advertiser_id: str, token: SecretStr, name: str | None
    ) -> Connected:
        """Store a token obtained outside OAuth for `advertiser_id` (TikTok's sandbox hands
        its one ad account's token out on the app page), once TikTok confirms it works for
        that advertiser; from then on it is served like any grant. `name` is the
        advertiser's name as shown to callers.

        Raises InvalidRequest when TikTok refuses the token, UpstreamUnavailable when it
        could not say."""
        try:
            await self.tiktok.check_advertiser(token, advertiser_id)
        except TikTokError as exc:
            if exc.retryable:
                raise errors.UpstreamUnavailable(
                    f"TikTok could not confirm the token (code {exc.outcome}); try again."
                ) from None
            raise errors.InvalidRequest(
                f"TikTok refused the token for advertiser {advertiser_id} "
                f"(code {exc.outcome}): nothing was stored."
            ) from None
        issued = IssuedAdvertiserToken(
            access_token=token, advertiser_ids=[advertiser_id], request_id=""
        )
        grant_id, connected = await self._keep(issued, Origin())
        if name is not None:
            async with transaction(self.db) as repo:
                await repo.set_advertiser_names(grant_id, {advertiser_id: name}, self.clock.now())
        return connected

    async def _keep(
        self, issued: IssuedAdvertiserToken, origin: Origin
    ) -> tuple[uuid.UUID, Connected]:
        """Seal and store the grant; its id, and what it connected."""
        now = self.clock.now()
        granted = sorted(set(issued.advertiser_ids))
        serve = origin.may_serve(Flow.ADVERTISER, granted)
        grant = new_grant(
            Flow.ADVERTISER,
            origin,
            now,
            scope=list(issued.scope),
            advertiser_ids=granted,
            next_check_at=now + timedelta(seconds=self.settings.liveness_interval_seconds),
            orphaned_at=None if serve else now,
        )
        self.sealer.seal(grant, issued.access_token)
        token = issued.access_token.get_secret_value()
        async with transaction(self.db) as repo:
            await repo.add(grant)
            moved = await repo.assign_advertisers(grant.id, serve, now)
            await origin.settle(repo, now, serve, None)
            # Any live grant that covered these advertisers may have lost its last one to this
            # grant, or to a racing authorization that committed first.
            previous = await repo.live_grants_covering_any(granted, besides=grant.id)
            if serve:
                # The last to authorize wins; the event names whom each advertiser left.
                had = await repo.end_users_of_grants(moved.values())
                taken = {a: had[g] for a, g in moved.items() if had[g] != grant.end_user}
                emit(
                    repo,
                    self.settings,
                    now,
                    "connection.created",
                    grant,
                    served_advertiser_ids=serve,
                    **({"previous_end_users": taken} if taken else {}),
                )
            orphans = []
            for orphan_id in await repo.orphan_grants_serving_nobody(previous, now):
                old = await repo.lock_grant(orphan_id)
                assert old is not None
                if same_secret(
                    self.sealer.open_access_token(old.id, old.key_id, old.access_token_enc), token
                ):
                    await repo.set_grant_status(old, GrantStatus.REVOKED, now)
                else:
                    orphans.append(orphan_id)
        log.info(
            "advertiser grant stored: grant=%s advertisers=%d served=%d replaced=%d request_id=%s",
            grant.id,
            len(granted),
            len(serve),
            len(orphans),
            issued.request_id,
            extra=grant.log_fields(
                "grant_stored",
                served_advertiser_ids=serve,
                replaced_grant_ids=[str(orphan) for orphan in orphans],
                connected_by=grant.connected_by,
                tiktok_request_id=issued.request_id,
            ),
        )
        if not serve:
            return grant.id, Connected(orphans=[grant.id, *orphans])
        return grant.id, Connected(advertiser_ids=serve, orphans=orphans)

    async def _store_names(self, grant_id: uuid.UUID, issued: IssuedAdvertiserToken) -> None:
        """Best effort: the grant is already stored, so a failure here only loses names."""
        try:
            listed = await self.tiktok.get_advertisers(issued.access_token)
        except TikTokError:
            log.info("advertiser names not fetched; the next liveness check fetches them")
            return
        names = {a.advertiser_id: a.advertiser_name for a in listed}
        async with transaction(self.db) as repo:
            await repo.set_advertiser_names(grant_id, names, self.clock.now())
