"""The TikTok account (tt_user) flow: a refreshable token pair, one live grant per open_id."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from tiktok_auth_service.authorization.flows import Connected, Origin, new_grant
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.refresh import write_account_tokens
from tiktok_auth_service.models.grants import Flow, Grant
from tiktok_auth_service.ops.webhooks import emit
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import (
    IssuedAccountTokens,
    TikTokClient,
)

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AccountFlow:
    """A TikTok account (tt_user): a refreshable token pair, one live grant per open_id."""

    settings: Settings
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    clock: Clock
    flow: Flow = Flow.TIKTOK_ACCOUNT

    def consent_url(self, state: str) -> str:
        # TikTok's Login Kit page: OAuth parameter names, comma-separated scope names.
        query = {
            "client_key": self.settings.tiktok_app_id,
            "response_type": "code",
            "scope": ",".join(self.settings.tiktok_account_scopes),
            "redirect_uri": self.settings.tiktok_redirect_uri,
            "state": state,
        }
        return f"{self.settings.tiktok_account_auth_url}?{urlencode(query)}"

    async def exchange(self, code: str) -> IssuedAccountTokens:
        return await self.tiktok.exchange_account_code(code, self.settings.tiktok_redirect_uri)

    async def discard(self, issued: IssuedAccountTokens) -> None:
        await self.tiktok.revoke_account_token(issued.access_token)

    async def store(self, issued: IssuedAccountTokens, origin: Origin) -> Connected:
        """Re-authorizing an account starts a new grant and orphans the one it replaces, whose
        refresh chain is then revoked; two racing authorizations leave one live chain."""
        now = self.clock.now()
        grant = new_grant(
            Flow.TIKTOK_ACCOUNT, origin, now, open_id=issued.open_id, scope=[], version=0
        )
        write_account_tokens(grant, issued, self.sealer, now, self.settings.refresh_ahead)
        if not origin.may_serve(Flow.TIKTOK_ACCOUNT, [issued.open_id]):
            grant.open_id = None
            grant.orphaned_at = now
            async with transaction(self.db) as repo:
                await repo.add(grant)
                await origin.settle(repo, now, [], None)
            return Connected(orphans=[grant.id])
        orphans: list[uuid.UUID] = []
        replaced: Grant | None = None
        async with transaction(self.db) as repo:
            while not await repo.insert_grant_unless_account_exists(grant):
                # Another grant holds this open_id (an earlier or a racing authorization).
                old = await repo.lock_grant_of_account(issued.open_id)
                if old is None:
                    continue  # it was just demoted by a racing authorization; insert again
                old.open_id = None
                old.orphaned_at = now
                old.updated_at = now
                old.version += 1
                await repo.session.flush()
                orphans.append(old.id)
                replaced = old
            await origin.settle(repo, now, [], issued.open_id)
            # One connection per account: authorizing it again updates that connection; the
            # last to authorize wins, and the event names whom it was taken from.
            event = "connection.updated" if orphans else "connection.created"
            taken = (
                {"previous_end_user": replaced.end_user}
                if replaced is not None and replaced.end_user != grant.end_user
                else {}
            )
            emit(
                repo,
                self.settings,
                now,
                event,
                grant,
                reauthorized=bool(orphans),
                **taken,
            )
        log.info(
            "account grant stored: grant=%s replaced=%d request_id=%s",
            grant.id,
            len(orphans),
            issued.request_id,
            extra=grant.log_fields(
                "grant_stored",
                replaced_grant_ids=[str(orphan) for orphan in orphans],
                connected_by=grant.connected_by,
                tiktok_request_id=issued.request_id,
            ),
        )
        return Connected(open_id=issued.open_id, orphans=orphans)
