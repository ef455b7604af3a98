"""Connect sessions, the API caller's leg: a single-use link opened for one person (POST
/connect-sessions), and what came of it (GET /connect-sessions/{session_id}). The browser leg
the link starts is `service.py`; both check `return_to` here."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from tiktok_auth_service import errors
from tiktok_auth_service.authorization.schemas import ConnectLink, ConnectOutcome
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.models.callers import ApiKey
from tiktok_auth_service.models.connect import ConnectSession
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.repository import Repository, transaction
from tiktok_auth_service.tokens.reads import Caller

# States a connect session opened are kept a day past expiry so a late callback still gets
# "expired" rather than "unknown", then dropped. Anonymous states (CONNECT_SESSIONS_REQUIRED
# off), which anyone can create, are dropped as soon as they expire. Connect sessions keep
# their outcome for GET /connect-sessions/{session_id} for 30 days past their expiry.
STATE_RETENTION = timedelta(days=1)
SESSION_RETENTION = timedelta(days=30)


async def _key_row(repo: Repository, api_key: str | None, caller: Caller | None) -> ApiKey:
    """The caller's API key, named on `caller` for the access log. Raises Unauthenticated."""
    key_row = await repo.api_key_by_key_hash(digest(api_key)) if api_key else None
    if key_row is None:
        raise errors.Unauthenticated()
    if caller is not None:
        caller.name = key_row.name
    return key_row


async def drop_expired(repo: Repository, now: datetime) -> None:
    await repo.delete_expired_states(now - STATE_RETENTION, now - SESSION_RETENTION)


def origin_of(url: str) -> str:
    """The origin of an http(s) URL, as RETURN_TO_ALLOWED_ORIGINS names it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_return_to(settings: Settings, return_to: str | None) -> None:
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
    if parts.scheme not in ("http", "https") or origin_of(return_to) not in (
        settings.return_to_allowed_origins
    ):
        raise refused


@dataclass(eq=False)
class ConnectSessions:
    settings: Settings
    db: Database
    clock: Clock

    async def open_session(
        self,
        api_key: str | None,
        flow: Flow,
        return_to: str | None,
        end_user: str | None,
        caller: Caller | None = None,
        tags: dict[str, str] | None = None,
    ) -> ConnectLink:
        """A single-use link for one person to connect, valid for STATE_TTL_SECONDS.

        A restricted key may open links only for a flow whose subjects it may read.
        Raises Unauthenticated, Forbidden, ReturnToNotAllowed: the key is checked first, so
        nobody without one learns which origins `return_to` may name."""
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        expires_at = now + timedelta(seconds=self.settings.state_ttl_seconds)
        async with transaction(self.db) as repo:
            key_row = await _key_row(repo, api_key, caller)
            check_return_to(self.settings, return_to)
            allowed = (
                key_row.allowed_advertiser_ids
                if flow == Flow.ADVERTISER
                else key_row.allowed_open_ids
            )
            if not key_row.unrestricted and not allowed:
                raise errors.Forbidden(f"This API key may not connect {flow} subjects.")
            await drop_expired(repo, now)
            opened = ConnectSession(
                id=uuid.uuid4(),
                session_hash=digest(secret),
                flow=flow,
                return_to=return_to,
                end_user=end_user,
                tags=tags or {},
                api_client_id=key_row.id,
                created_at=now,
                expires_at=expires_at,
            )
            await repo.add(opened)
        url = f"{self.settings.public_url('authorize')}?{urlencode({'session': secret})}"
        return ConnectLink(id=opened.id, url=url, expires_at=expires_at)

    async def outcome(
        self, api_key: str | None, session_id: str, caller: Caller | None = None
    ) -> ConnectOutcome:
        """What came of the connect session `session_id`, for the key that opened it.

        Raises Unauthenticated, ConnectSessionNotFound (also for another key's session and
        for an id that is not one, so ids cannot be probed)."""
        async with transaction(self.db) as repo:
            key_row = await _key_row(repo, api_key, caller)
            try:
                wanted = uuid.UUID(session_id)
            except ValueError:
                raise errors.ConnectSessionNotFound() from None
            row = await repo.connect_session_by_id(wanted)
        if row is None or row.api_client_id != key_row.id:
            raise errors.ConnectSessionNotFound()
        return ConnectOutcome.of(row, self.clock.now())
