"""Starting an authorization (a single-use state bound to the browser) and completing it at
the callback.

The callback commits the consumed state before it talks to TikTok: a replayed callback then
finds the state used and never exchanges the code twice.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from tiktok_auth_service import errors
from tiktok_auth_service.authorization.flows import ConsentFlow
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.models import Flow, OAuthState
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.tiktok import TikTokAuthError, TikTokError

log = logging.getLogger(__name__)

# States are kept a day past expiry so a late callback still gets "expired" rather than
# "unknown", then dropped.
STATE_RETENTION = timedelta(days=1)


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


@dataclass(eq=False)
class Authorization:
    settings: Settings
    db: Database
    clock: Clock
    flows: Mapping[Flow, ConsentFlow[Any]]

    def check_return_to(self, return_to: str | None) -> None:
        """Raises ReturnToNotAllowed unless `return_to` is an http(s) URL on an allowed origin."""
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

    async def start(
        self, flow: Flow, return_to: str | None, browser_binding: str | None
    ) -> AuthorizationStart:
        """Create a single-use state bound to this browser and build TikTok's consent URL.

        Raises ReturnToNotAllowed."""
        self.check_return_to(return_to)
        if not browser_binding or len(browser_binding) < 32:
            browser_binding = secrets.token_urlsafe(32)
        state = secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            repo = Repository(session)
            await repo.delete_expired_states(before=now - STATE_RETENTION)
            await repo.add_state(
                OAuthState(
                    state_hash=digest(state),
                    flow=flow,
                    browser_hash=digest(browser_binding),
                    return_to=return_to,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.state_ttl_seconds),
                )
            )
        return AuthorizationStart(self.flows[flow].consent_url(state), browser_binding)

    async def complete(
        self, params: CallbackParams, browser_binding: str | None
    ) -> AuthorizationResult:
        """Validate the state, then exchange the code and store what TikTok issued.

        Raises InvalidState before the state is known; errors after it (AuthorizationDenied,
        AuthorizationFailed, UpstreamUnavailable) are returned in the result, so the browser
        can be sent back to its `return_to` with the outcome.
        """
        state = await self._consume_state(params.state, browser_binding)
        flow = self.flows[state.flow]
        code = params.auth_code or params.code
        if params.error or not code:
            reason = params.error_description or params.error or "no authorization code"
            log.info("authorization not granted at TikTok: %s", params.error or "no code")
            return AuthorizationResult(
                state.flow, state.return_to, error=errors.AuthorizationDenied(f"TikTok: {reason}")
            )
        try:
            issued = await flow.exchange(code)
        except TikTokAuthError as exc:
            log.warning("code exchange refused: code=%s request_id=%s", exc.code, exc.request_id)
            return AuthorizationResult(
                state.flow,
                state.return_to,
                error=errors.AuthorizationFailed(f"TikTok refused the code (code {exc.code})."),
            )
        except TikTokError as exc:
            log.warning("code exchange failed: code=%s request_id=%s", exc.code, exc.request_id)
            return AuthorizationResult(
                state.flow,
                state.return_to,
                error=errors.UpstreamUnavailable(
                    "TikTok could not complete the authorization; please try again."
                ),
            )
        connected = await flow.store(issued)
        return AuthorizationResult(
            state.flow, state.return_to, connected.advertiser_ids, connected.open_id
        )

    async def _consume_state(self, state: str | None, browser_binding: str | None) -> OAuthState:
        if not state:
            raise errors.InvalidState("The callback carries no state.")
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            row = await Repository(session).lock_state(digest(state))
            if row is None:
                raise errors.InvalidState("This authorization link is unknown.")
            if row.used_at is not None:
                raise errors.InvalidState("This authorization link was already used.")
            if row.expires_at <= now:
                raise errors.InvalidState("This authorization link has expired; start again.")
            if not browser_binding or not secrets.compare_digest(
                digest(browser_binding), row.browser_hash
            ):
                raise errors.InvalidState(
                    "This authorization was started in another browser; start again here."
                )
            row.used_at = now
        return row
