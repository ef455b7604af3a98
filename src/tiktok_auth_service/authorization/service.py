"""The browser leg: starting an authorization (from a connect session, `sessions.py`, or
without one) with a single-use state bound to the browser, and completing it at the callback.

The callback commits the consumed state before it talks to TikTok: a replayed callback then
finds the state used and never exchanges the code twice.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.authorization.advertiser_flow import AdvertiserFlow
from tiktok_auth_service.authorization.flows import ConsentFlow, Origin
from tiktok_auth_service.authorization.schemas import (
    AuthorizationResult,
    AuthorizationStart,
    CallbackParams,
    ConsentPreview,
)
from tiktok_auth_service.authorization.sessions import check_return_to, drop_expired
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import digest, same_secret
from tiktok_auth_service.db import CONNECTION_ERRORS, Database
from tiktok_auth_service.grants.revocation import Revoker
from tiktok_auth_service.lease import RETRY_AFTER_SECONDS
from tiktok_auth_service.models.connect import OAuthState, SessionStatus
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.repository import transaction
from tiktok_auth_service.tiktok import (
    InvalidAuthCode,
    TikTokAuthError,
    TikTokError,
    TikTokRequestError,
)

log = logging.getLogger(__name__)

# Failures that turn revoking replaced grants into the worker's job instead of the browser's.
_BEST_EFFORT: tuple[type[Exception], ...] = (errors.ServiceError, *CONNECTION_ERRORS)


def _failure_fields(event: str, flow: Flow) -> dict[str, Any]:
    # TikTok's answer itself (code, request id, message) was logged by the client.
    return {"event": event, "flow": str(flow)}


def binding_id(state: str) -> str:
    """What names the binding cookie of the authorization carrying `state`: one cookie per
    authorization, so two tabs of one browser can each finish their own. Derived from the
    state's digest, so it reveals nothing of the state."""
    return digest(state)[:8].hex()


@dataclass(eq=False)
class Authorization:
    settings: Settings
    db: Database
    clock: Clock
    flows: Mapping[Flow, ConsentFlow[Any]]
    revoker: Revoker

    async def preview(
        self, flow: Flow, return_to: str | None, session: str | None = None
    ) -> ConsentPreview:
        """Check what GET /authorize would start, writing nothing: a link-preview bot (or a
        HEAD) fetching the link spends nothing, and the person continues from the page with
        `start`. With a connect `session`, its flow applies.

        Raises SessionRequired, InvalidSession, ReturnToNotAllowed."""
        if session is None:
            if self.settings.connect_sessions_required:
                raise errors.SessionRequired()
            check_return_to(self.settings, return_to)
        else:
            async with transaction(self.db) as repo:
                opened = await repo.connect_session(digest(session))
            now = self.clock.now()
            if opened is None or opened.used_at is not None or opened.expires_at <= now:
                raise errors.InvalidSession()
            flow = opened.flow
        consent = urlsplit(self.flows[flow].consent_url(""))
        return ConsentPreview(flow, f"{consent.scheme}://{consent.netloc}")

    async def start(
        self, flow: Flow, return_to: str | None, session: str | None = None
    ) -> AuthorizationStart:
        """Create a single-use state bound to a fresh browser binding and build TikTok's
        consent URL. With a connect `session`, its flow and return_to apply and the session
        is spent. The binding is always minted here, never taken from the browser: a cookie
        planted by a sibling host (possible over plain http) would otherwise bind the new
        state to a value somebody else knows.

        Raises SessionRequired (no session while CONNECT_SESSIONS_REQUIRED), InvalidSession,
        ReturnToNotAllowed."""
        if session is None and self.settings.connect_sessions_required:
            raise errors.SessionRequired()
        if session is None:
            check_return_to(self.settings, return_to)
        browser_binding = secrets.token_urlsafe(32)
        state = secrets.token_urlsafe(32)
        now = self.clock.now()
        async with transaction(self.db) as repo:
            row = OAuthState(
                state_hash=digest(state),
                flow=flow,
                browser_hash=digest(browser_binding),
                return_to=return_to,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.state_ttl_seconds),
            )
            if session is not None:
                opened = await repo.lock_connect_session(digest(session))
                if opened is None or opened.used_at is not None or opened.expires_at <= now:
                    raise errors.InvalidSession()
                opened.used_at = now
                # Pending for as long as the authorization it starts may come back.
                opened.expires_at = row.expires_at
                row.flow, row.return_to = opened.flow, opened.return_to
                row.api_client_id, row.end_user = opened.api_client_id, opened.end_user
                row.tags = opened.tags
                row.connect_session_id = opened.id
            else:
                await repo.delete_expired_anonymous_states(now)
                await drop_expired(repo, now)
            await repo.add(row)
        return AuthorizationStart(self.flows[row.flow].consent_url(state), state, browser_binding)

    async def complete(
        self, params: CallbackParams, browser_binding: str | None
    ) -> AuthorizationResult:
        """Validate the state, then exchange the code and store what TikTok issued.

        Raises InvalidState before the state is known; errors after it (AuthorizationDenied,
        AuthorizationFailed, AppCredentialsRejected, UpstreamUnavailable, Forbidden) are
        returned in the result, so the browser can be sent back to its `return_to` with the
        outcome.
        """
        state, origin = await self._consume_state(params.state, browser_binding)
        flow = self.flows[state.flow]
        session_id = state.connect_session_id

        async def failed(error: errors.ServiceError) -> AuthorizationResult:
            if session_id is not None:
                status = (
                    SessionStatus.DENIED
                    if isinstance(error, errors.AuthorizationDenied)
                    else SessionStatus.FAILED
                )
                async with transaction(self.db) as repo:
                    await repo.settle_connect_session(
                        session_id, self.clock.now(), status, error=error.code
                    )
            return AuthorizationResult(
                state.flow, state.return_to, error=error, session_id=session_id
            )

        code = params.auth_code or params.code
        if params.error or not code:
            reason = params.error_description or params.error or "no authorization code"
            # %r: the parameter is the browser's text and must not forge log lines.
            log.info("authorization not granted at TikTok: %r", (params.error or "no code")[:100])
            return await failed(errors.AuthorizationDenied(f"TikTok: {reason[:300]}"))
        try:
            issued = await flow.exchange(code)
        except InvalidAuthCode as exc:
            log.warning(
                "TikTok refused the authorization code",
                extra=_failure_fields("code_refused", state.flow),
            )
            return await failed(
                errors.AuthorizationFailed(f"TikTok refused the code ({exc.code}).")
            )
        except (TikTokAuthError, TikTokRequestError) as exc:
            log.error(
                "TikTok refused our app's credentials in the code exchange",
                extra=_failure_fields("app_credentials_rejected", state.flow),
            )
            return await failed(
                errors.AppCredentialsRejected(f"TikTok refused our app ({exc.code}).")
            )
        except TikTokError:
            log.info(
                "the code exchange failed; the person may try again",
                extra=_failure_fields("code_exchange_failed", state.flow),
            )
            return await failed(
                errors.UpstreamUnavailable(
                    "TikTok could not complete the authorization; please try again.",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            )
        try:
            connected = await flow.store(issued, origin)
        except Exception:
            # The code is spent and the token works (an advertiser's forever): with nothing
            # stored, nobody could ever revoke it, so it is revoked now.
            await self._discard(flow, issued)
            raise
        await self._revoke_orphans(connected.orphans)
        if connected.nothing:
            # The flow recorded this outcome with the grant it stored.
            return AuthorizationResult(
                state.flow,
                state.return_to,
                error=errors.Forbidden(
                    "The API key that opened this link may not connect what was granted."
                ),
                session_id=session_id,
            )
        return AuthorizationResult(
            state.flow,
            state.return_to,
            connected.advertiser_ids,
            connected.open_id,
            session_id=session_id,
            tags=origin.tags,
        )

    async def import_advertiser_token(
        self, advertiser_id: str, token: SecretStr, name: str | None
    ) -> list[str]:
        """Store and serve a token obtained outside OAuth (the sandbox's) for one advertiser,
        once TikTok confirms it; grants it replaced are revoked. Returns the advertisers it
        serves. Raises InvalidRequest (TikTok refused it) or UpstreamUnavailable."""
        flow = self.flows[Flow.ADVERTISER]
        assert isinstance(flow, AdvertiserFlow)
        connected = await flow.import_token(advertiser_id, token, name)
        await self._revoke_orphans(connected.orphans)
        return connected.advertiser_ids

    async def _discard(self, flow: ConsentFlow[Any], issued: Any) -> None:
        try:
            await flow.discard(issued)
        except TikTokError:
            log.error("a token TikTok issued was neither stored nor revoked")
        else:
            log.warning("storing a new grant failed; the token TikTok issued was revoked")

    async def _revoke_orphans(self, grant_ids: list[uuid.UUID]) -> None:
        """Revoke what the new grant replaced; what fails now, the worker retries."""
        if not grant_ids:
            return
        try:
            await self.revoker.revoke_orphans(grant_ids)
        except _BEST_EFFORT as exc:
            log.warning("replaced grants left for the worker to revoke: %s", type(exc).__name__)

    async def _consume_state(
        self, state: str | None, browser_binding: str | None
    ) -> tuple[OAuthState, Origin]:
        if not state:
            raise errors.InvalidState("The callback carries no state.")
        now = self.clock.now()
        async with transaction(self.db) as repo:
            row = await repo.lock_state(digest(state))
            if row is None:
                raise errors.InvalidState(
                    "This authorization link is unknown or has expired; start again."
                )
            if row.used_at is not None:
                raise errors.InvalidState("This authorization link was already used.")
            if row.expires_at <= now:
                raise errors.InvalidState("This authorization link has expired; start again.")
            if not browser_binding or not same_secret(digest(browser_binding), row.browser_hash):
                raise errors.InvalidState(
                    "This authorization was started in another browser; start again here."
                )
            row.used_at = now
            key_row = None
            if row.api_client_id is not None:
                key_row = await repo.api_key(row.api_client_id)
                if key_row is None or key_row.revoked_at is not None:
                    raise errors.InvalidState("The API key that opened this link was revoked.")
            if row.connect_session_id is not None:
                # Not expired while the code is exchanged and what TikTok issued stored.
                until = now + timedelta(seconds=self.settings.lease_seconds)
                await repo.extend_connect_session(row.connect_session_id, until)
        return row, Origin(key_row, row.end_user, row.connect_session_id, row.tags)
