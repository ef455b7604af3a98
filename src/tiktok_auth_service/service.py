"""Use cases: start and complete an authorization, serve and revoke tokens, manage API keys.

Knows nothing of HTTP requests or SQL text. Each use case owns its transactions, because the
callback must commit the consumed state before it talks to TikTok (a replayed callback then
finds the state used and never exchanges the code twice).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenCipher, grant_aad
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import ApiClient, Flow, Grant, GrantStatus, OAuthState
from tiktok_auth_service.refresh import AccountRefresher, AccountToken, seal_account_grant
from tiktok_auth_service.repository import (
    GrantReader,
    Repository,
    TokenRow,
    database_answers,
    read_account_token,
    read_advertiser_token,
)
from tiktok_auth_service.tiktok import (
    AccessTokenInvalid,
    AccountGrant,
    AdvertiserGrant,
    TikTokAuthError,
    TikTokClient,
    TikTokError,
)

log = logging.getLogger(__name__)

ADVERTISER_ID = re.compile(r"^[0-9]{1,32}$")
API_KEY_PREFIX = "tas_"
STATE_RETENTION = timedelta(days=1)


def sha256(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    browser_binding: str


@dataclass(frozen=True)
class CallbackParams:
    """What TikTok sent back to /callback, untouched."""

    state: str | None
    auth_code: str | None
    code: str | None
    error: str | None
    error_description: str | None


@dataclass(frozen=True)
class AuthorizationResult:
    flow: Flow
    return_to: str | None
    advertiser_ids: list[str] = field(default_factory=list)
    open_id: str | None = None
    error: errors.ServiceError | None = None


@dataclass(frozen=True, slots=True)
class AdvertiserToken:
    """The body of GET /tokens/{advertiser_id}."""

    advertiser_id: str
    access_token: str
    expires_at: datetime | None
    scope: list[Any]
    status: str


@dataclass(frozen=True)
class Revocation:
    advertiser_ids: list[str]
    status: str
    revoked_now: bool


@dataclass(frozen=True)
class NewApiKey:
    client: ApiClient
    key: SecretStr


@dataclass(eq=False)
class AuthService:
    """The use cases, over the resources the app factory opened."""

    settings: Settings
    db: Database
    tiktok: TikTokClient
    cipher: TokenCipher
    clock: Clock
    refresher: AccountRefresher = field(init=False)

    def __post_init__(self) -> None:
        self.refresher = AccountRefresher(
            self.settings, self.db, self.tiktok, self.cipher, self.clock
        )

    # -- Authorization -------------------------------------------------------------------

    def check_return_to(self, return_to: str | None) -> None:
        if return_to is None:
            return
        refused = errors.ReturnToNotAllowed(
            "return_to must be an absolute URL on one of RETURN_TO_ALLOWED_ORIGINS"
        )
        if len(return_to) > 2048 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in return_to):
            raise refused
        try:
            parts = urlsplit(return_to)
        except ValueError:  # e.g. an unbalanced IPv6 bracket
            raise refused from None
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if parts.scheme not in ("http", "https") or origin not in (
            self.settings.return_to_allowed_origins
        ):
            raise refused

    async def start_authorization(
        self, flow: Flow, return_to: str | None, browser_binding: str | None
    ) -> AuthorizationStart:
        """Create a single-use state bound to this browser and build TikTok's consent URL."""
        self.check_return_to(return_to)
        if not browser_binding or len(browser_binding) < 32:
            browser_binding = secrets.token_urlsafe(32)
        state = secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            # Housekeeping on a rare path: states are kept a day past expiry so a late
            # callback still gets "expired" rather than "unknown", then dropped.
            await repo.delete_expired_states(before=now - STATE_RETENTION)
            await repo.add_state(
                OAuthState(
                    state_hash=sha256(state),
                    flow=flow,
                    browser_hash=sha256(browser_binding),
                    return_to=return_to,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.state_ttl_seconds),
                )
            )
        return AuthorizationStart(self._consent_url(flow, state), browser_binding)

    def _consent_url(self, flow: Flow, state: str) -> str:
        settings = self.settings
        if flow == Flow.ADVERTISER:
            query = {
                "app_id": settings.tiktok_app_id,
                "redirect_uri": settings.tiktok_redirect_uri,
                "state": state,
            }
            return f"{settings.tiktok_auth_url}?{urlencode(query)}"
        # The TikTok-account page is TikTok's Login Kit: OAuth names, comma-separated scopes.
        query = {
            "client_key": settings.tiktok_app_id,
            "response_type": "code",
            "scope": ",".join(settings.tiktok_account_scopes),
            "redirect_uri": settings.tiktok_redirect_uri,
            "state": state,
        }
        return f"{settings.tiktok_account_auth_url}?{urlencode(query)}"

    async def _consume_state(self, state: str | None, browser_binding: str | None) -> OAuthState:
        if not state:
            raise errors.InvalidState("The callback carries no state.")
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            row = await Repository(session).lock_state(sha256(state))
            if row is None:
                raise errors.InvalidState("This authorization link is unknown.")
            if row.used_at is not None:
                raise errors.InvalidState("This authorization link was already used.")
            if row.expires_at <= now:
                raise errors.InvalidState("This authorization link has expired; start again.")
            if not browser_binding or not secrets.compare_digest(
                sha256(browser_binding), row.browser_hash
            ):
                raise errors.InvalidState(
                    "This authorization was started in another browser; start again here."
                )
            row.used_at = now
        return row

    async def complete_authorization(
        self, params: CallbackParams, browser_binding: str | None
    ) -> AuthorizationResult:
        """Validate the state, then exchange the code and store the grant.

        Errors before the state is known raise; errors after it are returned in the result,
        so the browser can be sent back to its `return_to` with the outcome.
        """
        state = await self._consume_state(params.state, browser_binding)
        flow = Flow(state.flow)
        code = params.auth_code or params.code
        if params.error or not code:
            reason = params.error_description or params.error or "no authorization code"
            log.info("authorization not granted at TikTok: %s", params.error or "no code")
            return AuthorizationResult(
                flow, state.return_to, error=errors.AuthorizationDenied(f"TikTok: {reason}")
            )
        try:
            if flow == Flow.TIKTOK_ACCOUNT:
                account = await self.tiktok.exchange_account_code(
                    code, self.settings.tiktok_redirect_uri
                )
            else:
                granted = await self.tiktok.exchange_code(code)
        except TikTokAuthError as exc:
            log.warning("code exchange refused: code=%s request_id=%s", exc.code, exc.request_id)
            return AuthorizationResult(
                flow,
                state.return_to,
                error=errors.AuthorizationFailed(f"TikTok refused the code (code {exc.code})."),
            )
        except TikTokError as exc:
            log.warning("code exchange failed: code=%s request_id=%s", exc.code, exc.request_id)
            return AuthorizationResult(
                flow,
                state.return_to,
                error=errors.UpstreamUnavailable(
                    "TikTok could not complete the authorization; please try again."
                ),
            )
        if flow == Flow.TIKTOK_ACCOUNT:
            await self._store_account_grant(account)
            return AuthorizationResult(flow, state.return_to, open_id=account.open_id)
        grant_id = await self._store_advertiser_grant(granted)
        await self._sync_advertiser_names(grant_id, granted)
        return AuthorizationResult(flow, state.return_to, advertiser_ids=granted.advertiser_ids)

    async def _store_account_grant(self, granted: AccountGrant) -> None:
        """One grant per TikTok account: re-authorizing replaces its tokens in place."""
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            grant = await repo.lock_grant_of_account(granted.open_id)
            if grant is None:
                grant = seal_account_grant(None, granted, self.cipher, now)
                grant.last_checked_at = now
                if await repo.insert_grant_unless_account_exists(grant):
                    log.info(
                        "account grant stored: grant=%s request_id=%s", grant.id, granted.request_id
                    )
                    return
                # A concurrent first authorization of the same account won the insert.
                grant = await repo.lock_grant_of_account(granted.open_id)
                assert grant is not None
            seal_account_grant(grant, granted, self.cipher, now)
            grant.last_checked_at = now
        log.info("account grant updated: grant=%s request_id=%s", grant.id, granted.request_id)

    async def _store_advertiser_grant(self, granted: AdvertiserGrant) -> uuid.UUID:
        now = self.clock.now()
        grant_id = uuid.uuid4()
        key_id, access_enc = self.cipher.encrypt(
            granted.access_token.get_secret_value(), grant_aad(grant_id, "access_token")
        )
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.add_grant(
                Grant(
                    id=grant_id,
                    flow=Flow.ADVERTISER,
                    key_id=key_id,
                    access_token_enc=access_enc,
                    scope=list(granted.scope),
                    status=GrantStatus.ACTIVE,
                    created_at=now,
                    updated_at=now,
                    last_checked_at=now,
                )
            )
            await repo.assign_advertisers(grant_id, granted.advertiser_ids, now)
        log.info(
            "advertiser grant stored: grant=%s advertisers=%d request_id=%s",
            grant_id,
            len(granted.advertiser_ids),
            granted.request_id,
        )
        return grant_id

    async def _sync_advertiser_names(self, grant_id: uuid.UUID, granted: AdvertiserGrant) -> None:
        """Best effort: the grant is already stored, so a failure here only loses names."""
        try:
            listed = await self.tiktok.get_advertisers(granted.access_token)
        except TikTokError as exc:
            log.warning(
                "advertiser names not fetched: code=%s request_id=%s", exc.code, exc.request_id
            )
            return
        names = {
            item.advertiser_id: item.advertiser_name
            for item in listed
            if item.advertiser_id in set(granted.advertiser_ids)
        }
        async with self.db.session() as session, session.begin():
            await Repository(session).set_advertiser_names(grant_id, names, self.clock.now())

    # -- Serving tokens ------------------------------------------------------------------

    async def _servable_grant(
        self, read: GrantReader, api_key: str | None, subject: str, label: str
    ) -> TokenRow:
        """One query, then 401, 403, 404 and 409 in that order: a restricted key learns
        nothing about subjects outside its list."""
        if not api_key:
            raise errors.Unauthenticated()
        row = await read(self.db.pool, sha256(api_key), subject)
        if row is None:
            raise errors.Unauthenticated()
        if not row.unrestricted and subject not in row.allowed:
            raise errors.Forbidden()
        if row.grant_id is None:
            raise errors.NotConnected(f"{label} {subject} is not connected.")
        if row.status != GrantStatus.ACTIVE:
            raise errors.ReauthorizationRequired()
        return row

    def _access_token(self, row: TokenRow) -> str:
        assert row.grant_id is not None and row.key_id and row.access_token_enc
        return self.cipher.decrypt(
            row.key_id, row.access_token_enc, grant_aad(row.grant_id, "access_token")
        )

    async def get_advertiser_token(
        self, api_key: str | None, advertiser_id: str
    ) -> AdvertiserToken:
        """The hot path: one query answers who is asking, whether they may, and the token."""
        row = await self._servable_grant(
            read_advertiser_token, api_key, advertiser_id, "Advertiser"
        )
        return AdvertiserToken(
            advertiser_id=advertiser_id,
            access_token=self._access_token(row),
            expires_at=row.expires_at,
            scope=row.scope,
            status=GrantStatus.ACTIVE,
        )

    async def get_account_token(
        self, api_key: str | None, open_id: str, min_valid_for: int | None
    ) -> AccountToken:
        """A TikTok-account token valid for at least the leeway (or `min_valid_for` seconds),
        refreshed first when it would not be."""
        row = await self._servable_grant(read_account_token, api_key, open_id, "TikTok account")
        assert row.grant_id is not None and row.expires_at is not None
        valid_for = timedelta(seconds=max(self.settings.refresh_leeway_seconds, min_valid_for or 0))
        now = self.clock.now()
        if row.expires_at - now < valid_for:
            return await self.refresher.valid_token(row.grant_id, valid_for)
        return AccountToken(
            open_id=open_id,
            access_token=self._access_token(row),
            expires_at=row.expires_at,
            refresh_expires_at=row.refresh_expires_at,
            scope=row.scope,
            status=self.refresher.status_of(row.refresh_expires_at, now),
        )

    async def authenticate(self, api_key: str | None, advertiser_id: str) -> ApiClient:
        if not api_key:
            raise errors.Unauthenticated()
        async with self.db.session() as session:
            client = await Repository(session).api_client_by_key_hash(sha256(api_key))
        if client is None:
            raise errors.Unauthenticated()
        if not client.unrestricted and advertiser_id not in client.allowed_advertiser_ids:
            raise errors.Forbidden()
        return client

    async def revoke_advertiser(self, api_key: str | None, advertiser_id: str) -> Revocation:
        """Revoke at TikTok the token serving this advertiser, then mark its grant revoked.

        TikTok's token covers every advertiser of the grant, so all of them are revoked; the
        answer lists them. Idempotent: a revoked grant is reported without calling TikTok.
        A transient TikTok failure changes nothing, so the caller can simply retry.
        """
        client = await self.authenticate(api_key, advertiser_id)
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            grant = await repo.lock_grant_of_advertiser(advertiser_id)
            if grant is None:
                raise errors.NotConnected(f"Advertiser {advertiser_id} is not connected.")
            advertiser_ids = await repo.advertiser_ids_of_grant(grant.id)
            if not client.unrestricted and not set(advertiser_ids) <= set(
                client.allowed_advertiser_ids
            ):
                raise errors.Forbidden(
                    "The token serving this advertiser also serves advertisers outside this "
                    "key's list; revoking it needs a key allowed for all of them."
                )
            if grant.status == GrantStatus.REVOKED:
                return Revocation(advertiser_ids, GrantStatus.REVOKED, revoked_now=False)
            token = self.cipher.decrypt(
                grant.key_id, grant.access_token_enc, grant_aad(grant.id, "access_token")
            )
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
        return Revocation(advertiser_ids, GrantStatus.REVOKED, revoked_now=True)

    async def database_ready(self) -> bool:
        return await database_answers(self.db.pool)

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(
        self, name: str, advertiser_ids: list[str], open_ids: list[str] | None = None
    ) -> NewApiKey:
        """Create a caller; the key is returned once and only its hash is stored.

        Without advertiser ids or open ids the key may read every token; with any, only those.
        """
        open_ids = open_ids or []
        for advertiser_id in advertiser_ids:
            if not ADVERTISER_ID.match(advertiser_id):
                raise errors.InvalidRequest(f"{advertiser_id!r} is not an advertiser id")
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        client = ApiClient(
            id=uuid.uuid4(),
            name=name,
            key_hash=sha256(key),
            unrestricted=not (advertiser_ids or open_ids),
            allowed_advertiser_ids=sorted(set(advertiser_ids)),
            allowed_open_ids=sorted(set(open_ids)),
            created_at=self.clock.now(),
        )
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            if await repo.api_client_by_name(name) is not None:
                raise errors.InvalidRequest(f"an API key named {name!r} already exists")
            await repo.add_api_client(client)
        return NewApiKey(client, SecretStr(key))

    async def api_key_active(self, api_key: str) -> bool:
        async with self.db.session() as session:
            return await Repository(session).api_client_by_key_hash(sha256(api_key)) is not None

    async def list_api_keys(self) -> list[ApiClient]:
        async with self.db.session() as session:
            return list(await Repository(session).list_api_clients())

    async def revoke_api_key(self, name: str) -> bool:
        """Returns False when no active key has that name."""
        async with self.db.session() as session, session.begin():
            client = await Repository(session).api_client_by_name(name)
            if client is None or client.revoked_at is not None:
                return False
            client.revoked_at = self.clock.now()
        return True
