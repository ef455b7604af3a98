"""The two TikTok consent flows behind one small interface (`ConsentFlow`): the consent URL,
the code exchange, and storing what TikTok issued; who asked (`Origin`) and what was connected
(`Connected`). Each flow is one class of its own module (`advertiser_flow.py`,
`account_flow.py`): adding or changing a flow touches only its class."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from tiktok_auth_service import errors
from tiktok_auth_service.models.callers import ApiKey
from tiktok_auth_service.models.connect import SessionStatus
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository

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


def new_grant(flow: Flow, origin: Origin, now: datetime, **values: Any) -> Grant:
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
