"""The two TikTok consent flows behind one small interface: the consent URL, the code exchange,
and storing what TikTok issued. Adding or changing a flow touches only its class here."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import TokenSealer, same_secret
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.refresh import write_account_tokens
from tiktok_auth_service.models import ApiKey, Flow, Grant, GrantStatus, SessionStatus
from tiktok_auth_service.ops.webhooks import emit
from tiktok_auth_service.repository import Repository, transaction
from tiktok_auth_service.tiktok import (
    IssuedAccountTokens,
    IssuedAdvertiserToken,
    TikTokClient,
    TikTokError,
)

log = logging.getLogger(__name__)

IssuedT = TypeVar("IssuedT")


@dataclass(frozen=True)
class Origin:
    """Who asked for this authorization: the API key that opened the connect session (None
    when sessions are not required), its `end_user` label and tags, and the session's id."""

    api_key: ApiKey | None = None
    end_user: str | None = None
    session_id: uuid.UUID | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def may_serve(self, flow: Flow, subjects: list[str]) -> list[str]:
        """The subjects a grant of this origin may serve: a restricted key's own only, so a
        link it opened cannot take over who serves anybody else's advertisers or accounts."""
        if self.api_key is None or self.api_key.unrestricted:
            return subjects
        allowed = (
            self.api_key.allowed_advertiser_ids
            if flow == Flow.ADVERTISER
            else self.api_key.allowed_open_ids
        )
        return [subject for subject in subjects if subject in allowed]

    def stamp(self, grant: Grant) -> None:
        grant.api_client_id = self.api_key.id if self.api_key else None
        grant.connected_by = self.api_key.name if self.api_key else None
        grant.end_user = self.end_user
        grant.tags = dict(self.tags)

    async def settle(
        self, repo: Repository, now: datetime, advertiser_ids: list[str], open_id: str | None
    ) -> None:
        """Record on the connect session what its authorization connected, in the
        transaction that stores the grant: `connected` is never said of a grant that was not
        stored, nor a stored one left unsaid. Connecting nothing the key may serve fails."""
        if self.session_id is None:
            return
        if advertiser_ids or open_id is not None:
            await repo.settle_connect_session(
                self.session_id,
                now,
                SessionStatus.CONNECTED,
                advertiser_ids=advertiser_ids,
                open_id=open_id,
            )
        else:
            await repo.settle_connect_session(
                self.session_id, now, SessionStatus.FAILED, error=errors.Forbidden.code
            )


@dataclass(frozen=True)
class Connected:
    """What a completed authorization connected (advertisers, or one TikTok account), and
    the grants it left orphaned, whose tokens must now be revoked."""

    advertiser_ids: list[str] = field(default_factory=list)
    open_id: str | None = None
    orphans: list[uuid.UUID] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        return not self.advertiser_ids and self.open_id is None


class ConsentFlow(Protocol[IssuedT]):
    flow: Flow

    def consent_url(self, state: str) -> str:
        """TikTok's consent page for this flow, carrying `state`."""
        ...

    async def exchange(self, code: str) -> IssuedT:
        """Trade the callback's code for tokens. Raises the TikTok client's errors."""
        ...

    async def store(self, issued: IssuedT, origin: Origin) -> Connected:
        """Store (sealed) what TikTok issued and say what is now connected; a grant that may
        serve nothing of what was granted is stored orphaned, to be revoked."""
        ...

    async def discard(self, issued: IssuedT) -> None:
        """Revoke at TikTok what `exchange` issued when it could not be stored."""
        ...


def _new_grant(flow: Flow, origin: Origin, now: datetime, **values: Any) -> Grant:
    grant = Grant(
        id=uuid.uuid4(),
        flow=flow,
        key_id="",
        access_token_enc=b"",
        status=GrantStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        last_checked_at=now,
        **values,
    )
    origin.stamp(grant)
    return grant


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
        grant = _new_grant(
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
        grant = _new_grant(
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
