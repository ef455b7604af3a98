"""Serving tokens to internal callers, and revoking them.

A token read is the hot path: one query answers who is asking, whether they may, and the
sealed token; the answer is a slotted dataclass that orjson serialises directly. These
dataclasses are also the OpenAPI schemas of the answers, so each body is defined once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer, digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Grant, GrantStatus
from tiktok_auth_service.refresh import AccountRefresher
from tiktok_auth_service.repository import (
    GrantReader,
    Repository,
    TokenRow,
    read_account_token,
    read_advertiser_token,
)
from tiktok_auth_service.tiktok import AccessTokenInvalid, TikTokClient, TikTokError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdvertiserToken:
    """The answer of GET /tokens/{advertiser_id}."""

    advertiser_id: Annotated[
        str, Field(description="The advertiser (ad account) id, a string of digits.")
    ]
    access_token: Annotated[str, Field(description="Send as the `Access-Token` header to TikTok.")]
    expires_at: Annotated[
        datetime | None,
        Field(
            description="When the token stops working; null: advertiser tokens never expire by "
            "time and die only by revocation."
        ),
    ]
    scope: Annotated[list[int], Field(description="TikTok permission ids granted.")]
    status: Literal["active"]


AccountStatus = Literal["active", "refresh_expiring"]


@dataclass(frozen=True, slots=True)
class AccountToken:
    """The answer of GET /tokens/accounts/{open_id}. Never carries the refresh token."""

    open_id: Annotated[str, Field(description="The TikTok account id.")]
    access_token: Annotated[str, Field(description="Send as the `Access-Token` header to TikTok.")]
    expires_at: Annotated[
        datetime, Field(description="When the access token expires (24 h after issue).")
    ]
    refresh_expires_at: Annotated[
        datetime | None,
        Field(
            description="When the refresh token dies (one year after the first grant); after "
            "it the user must authorize again."
        ),
    ]
    scope: list[str]
    status: Annotated[
        AccountStatus,
        Field(
            description="`refresh_expiring`: re-authorization will be needed within "
            "REFRESH_EXPIRY_WARNING_DAYS."
        ),
    ]


@dataclass(frozen=True, slots=True)
class Revocation:
    """The answer of DELETE /tokens/{advertiser_id}."""

    advertiser_ids: Annotated[
        list[str],
        Field(
            description="Every advertiser served by the revoked token (TikTok revokes per grant)."
        ),
    ]
    status: Literal["revoked"]
    revoked_now: Annotated[bool, Field(description="False when the grant was already revoked.")]


@dataclass(eq=False)
class TokenService:
    settings: Settings
    db: Database
    tiktok: TikTokClient
    sealer: TokenSealer
    refresher: AccountRefresher
    clock: Clock

    async def get_advertiser_token(
        self, api_key: str | None, advertiser_id: str
    ) -> AdvertiserToken:
        """The token serving this advertiser.

        Raises Unauthenticated, Forbidden, NotConnected, ReauthorizationRequired,
        TokenUnreadable."""
        row = await self._servable(read_advertiser_token, api_key, advertiser_id, "Advertiser")
        return AdvertiserToken(
            advertiser_id=advertiser_id,
            access_token=self._access_token(row),
            expires_at=row.expires_at,
            scope=row.scope,
            status="active",
        )

    async def get_account_token(
        self, api_key: str | None, open_id: str, min_valid_for: int | None
    ) -> AccountToken:
        """A TikTok-account token valid for at least the leeway (or `min_valid_for` seconds),
        refreshed first when it would not be.

        Raises what get_advertiser_token raises, and UpstreamUnavailable."""
        row = await self._servable(read_account_token, api_key, open_id, "TikTok account")
        assert row.grant_id is not None and row.expires_at is not None
        valid_for = timedelta(seconds=max(self.settings.refresh_leeway_seconds, min_valid_for or 0))
        now = self.clock.now()
        if row.expires_at - now < valid_for:
            grant = await self.refresher.valid_grant(row.grant_id, valid_for)
            return self._account_token(grant)
        return AccountToken(
            open_id=open_id,
            access_token=self._access_token(row),
            expires_at=row.expires_at,
            refresh_expires_at=row.refresh_expires_at,
            scope=row.scope,
            status=self._account_status(row.refresh_expires_at, now),
        )

    async def revoke_advertiser(self, api_key: str | None, advertiser_id: str) -> Revocation:
        """Revoke at TikTok the token serving this advertiser, then mark its grant revoked.

        TikTok's token covers every advertiser of the grant, so all of them are revoked; the
        answer lists them. Idempotent: a revoked grant is reported without calling TikTok.
        A transient TikTok failure changes nothing, so the caller can simply retry.
        Raises Unauthenticated, Forbidden, NotConnected, UpstreamUnavailable.
        """
        row = await self._authorized(read_advertiser_token, api_key, advertiser_id, "Advertiser")
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            grant = await repo.lock_grant_of_advertiser(advertiser_id)
            if grant is None:
                raise errors.NotConnected(f"Advertiser {advertiser_id} is not connected.")
            advertiser_ids = await repo.advertiser_ids_of_grant(grant.id)
            if not row.unrestricted and not set(advertiser_ids) <= set(row.allowed):
                raise errors.Forbidden(
                    "The token serving this advertiser also serves advertisers outside this "
                    "key's list; revoking it needs a key allowed for all of them."
                )
            if grant.status == GrantStatus.REVOKED:
                return Revocation(advertiser_ids, "revoked", revoked_now=False)
            token = self.sealer.open_access_token(grant.id, grant.key_id, grant.access_token_enc)
            try:
                await self.tiktok.revoke(SecretStr(token))
            except AccessTokenInvalid:
                log.info("grant %s was already dead at TikTok", grant.id)
            except TikTokError as exc:
                log.warning("revoke failed: code=%s request_id=%s", exc.code, exc.request_id)
                raise errors.UpstreamUnavailable(
                    "TikTok did not confirm the revocation; nothing was changed, retry later.",
                    retry_after=30,
                ) from exc
            await repo.set_grant_status(grant, GrantStatus.REVOKED, self.clock.now())
        log.info("grant %s revoked (%d advertisers)", grant.id, len(advertiser_ids))
        return Revocation(advertiser_ids, "revoked", revoked_now=True)

    async def _authorized(
        self, read: GrantReader, api_key: str | None, subject: str, label: str
    ) -> TokenRow:
        """One query, then 401, 403 and 404 in that order: a restricted key learns nothing
        about subjects outside its list."""
        if not api_key:
            raise errors.Unauthenticated()
        row = await read(self.db.pool, digest(api_key), subject)
        if row is None:
            raise errors.Unauthenticated()
        if not row.unrestricted and subject not in row.allowed:
            raise errors.Forbidden()
        if row.grant_id is None:
            raise errors.NotConnected(f"{label} {subject} is not connected.")
        return row

    async def _servable(
        self, read: GrantReader, api_key: str | None, subject: str, label: str
    ) -> TokenRow:
        row = await self._authorized(read, api_key, subject, label)
        if row.status != GrantStatus.ACTIVE:
            raise errors.ReauthorizationRequired()
        return row

    def _access_token(self, row: TokenRow) -> str:
        assert row.grant_id is not None and row.key_id and row.access_token_enc
        return self.sealer.open_access_token(row.grant_id, row.key_id, row.access_token_enc)

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
        )

    def _account_status(self, refresh_expires_at: datetime | None, now: datetime) -> AccountStatus:
        """`active`, or `refresh_expiring` when the user must re-authorize soon."""
        warn = timedelta(days=self.settings.refresh_expiry_warning_days)
        if refresh_expires_at is not None and refresh_expires_at - now <= warn:
            return "refresh_expiring"
        return "active"
