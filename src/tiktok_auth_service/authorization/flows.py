"""The two TikTok consent flows behind one small interface: the consent URL, the code exchange,
and storing what TikTok issued. Adding or changing a flow touches only its class here."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from urllib.parse import urlencode

from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Flow, Grant, GrantStatus
from tiktok_auth_service.refresh import write_account_tokens
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.tiktok import (
    IssuedAccountTokens,
    IssuedAdvertiserToken,
    TikTokClient,
    TikTokError,
)

log = logging.getLogger(__name__)

IssuedT = TypeVar("IssuedT")


@dataclass(frozen=True)
class Connected:
    """What a completed authorization connected: advertisers, or one TikTok account."""

    advertiser_ids: list[str] = field(default_factory=list)
    open_id: str | None = None


class ConsentFlow(Protocol[IssuedT]):
    flow: Flow

    def consent_url(self, state: str) -> str:
        """TikTok's consent page for this flow, carrying `state`."""
        ...

    async def exchange(self, code: str) -> IssuedT:
        """Trade the callback's code for tokens. Raises the TikTok client's errors."""
        ...

    async def store(self, issued: IssuedT) -> Connected:
        """Store (sealed) what TikTok issued and say what is now connected."""
        ...


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

    async def store(self, issued: IssuedAdvertiserToken) -> Connected:
        now = self.clock.now()
        grant = Grant(
            id=uuid.uuid4(),
            flow=Flow.ADVERTISER,
            key_id="",
            access_token_enc=b"",
            scope=list(issued.scope),
            status=GrantStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            last_checked_at=now,
        )
        self.sealer.seal(grant, issued.access_token)
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.add_grant(grant)
            await repo.assign_advertisers(grant.id, issued.advertiser_ids, now)
        log.info(
            "advertiser grant stored: grant=%s advertisers=%d request_id=%s",
            grant.id,
            len(issued.advertiser_ids),
            issued.request_id,
        )
        await self._store_names(grant.id, issued)
        return Connected(advertiser_ids=list(issued.advertiser_ids))

    async def _store_names(self, grant_id: uuid.UUID, issued: IssuedAdvertiserToken) -> None:
        """Best effort: the grant is already stored, so a failure here only loses names."""
        try:
            listed = await self.tiktok.get_advertisers(issued.access_token)
        except TikTokError as exc:
            log.warning(
                "advertiser names not fetched: code=%s request_id=%s", exc.code, exc.request_id
            )
            return
        granted = set(issued.advertiser_ids)
        names = {a.advertiser_id: a.advertiser_name for a in listed if a.advertiser_id in granted}
        async with self.db.session() as session, session.begin():
            await Repository(session).set_advertiser_names(grant_id, names, self.clock.now())


@dataclass(eq=False)
class AccountFlow:
    """A TikTok account (tt_user): a refreshable token pair, one grant per open_id."""

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

    async def store(self, issued: IssuedAccountTokens) -> Connected:
        """Re-authorizing an account replaces its tokens in place."""
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            grant = await repo.lock_grant_of_account(issued.open_id)
            if grant is None:
                grant = Grant(
                    id=uuid.uuid4(),
                    flow=Flow.TIKTOK_ACCOUNT,
                    open_id=issued.open_id,
                    key_id="",
                    access_token_enc=b"",
                    scope=[],
                    status=GrantStatus.ACTIVE,
                    version=0,
                    created_at=now,
                    updated_at=now,
                    last_checked_at=now,
                )
                write_account_tokens(grant, issued, self.sealer, now)
                if await repo.insert_grant_unless_account_exists(grant):
                    log.info(
                        "account grant stored: grant=%s request_id=%s", grant.id, issued.request_id
                    )
                    return Connected(open_id=issued.open_id)
                # A concurrent first authorization of the same account won the insert.
                grant = await repo.lock_grant_of_account(issued.open_id)
                assert grant is not None
            write_account_tokens(grant, issued, self.sealer, now)
            grant.last_checked_at = now
        log.info("account grant updated: grant=%s request_id=%s", grant.id, issued.request_id)
        return Connected(open_id=issued.open_id)
