"""API keys of internal callers: created once (only their SHA-256 is stored), listed, revoked."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from pydantic import SecretStr

from tiktok_auth_service import errors
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.models.callers import ApiKey
from tiktok_auth_service.repository import transaction

# What the token routes accept as a subject (their path patterns are these).
ADVERTISER_ID = "[0-9]{1,32}"
OPEN_ID = r"[\x21-\x7e]{1,128}"
_ADVERTISER_ID = re.compile(ADVERTISER_ID)
_OPEN_ID = re.compile(OPEN_ID)
API_KEY_PREFIX = "tas_"


@dataclass(frozen=True)
class NewApiKey:
    row: ApiKey
    key: SecretStr


@dataclass(eq=False)
class ApiKeys:
    db: Database
    clock: Clock

    async def create(
        self, name: str, advertiser_ids: list[str], open_ids: list[str] | None = None
    ) -> NewApiKey:
        """Create a caller; the key is returned once and only its hash is stored.

        Without advertiser ids or open ids the key may read every token; with any, only those.
        Raises InvalidRequest for a malformed advertiser id or open id, or a name already
        taken.
        """
        open_ids = open_ids or []
        for advertiser_id in advertiser_ids:
            if not _ADVERTISER_ID.fullmatch(advertiser_id):
                raise errors.InvalidRequest(f"{advertiser_id!r} is not an advertiser id")
        for open_id in open_ids:
            if not _OPEN_ID.fullmatch(open_id):
                raise errors.InvalidRequest(f"{open_id[:140]!r} is not an open id")
            # TikTok's open ids are never all digits (they begin with "-"); an advertiser id
            # given here would restrict the key to nothing it can ever read.
            if _ADVERTISER_ID.fullmatch(open_id):
                raise errors.InvalidRequest(
                    f"{open_id!r} looks like an advertiser id, not an open id: use --advertiser"
                )
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            id=uuid.uuid4(),
            name=name,
            key_hash=digest(key),
            unrestricted=not (advertiser_ids or open_ids),
            allowed_advertiser_ids=sorted(set(advertiser_ids)),
            allowed_open_ids=sorted(set(open_ids)),
            created_at=self.clock.now(),
        )
        async with transaction(self.db) as repo:
            if await repo.api_key_by_name(name) is not None:
                raise errors.InvalidRequest(f"an API key named {name!r} already exists")
            await repo.add(row)
        return NewApiKey(row, SecretStr(key))

    async def is_active(self, api_key: str) -> bool:
        async with transaction(self.db) as repo:
            return await repo.api_key_by_key_hash(digest(api_key)) is not None

    async def list(self) -> list[ApiKey]:
        async with transaction(self.db) as repo:
            return list(await repo.list_api_keys())

    async def revoke(self, name: str) -> bool:
        """Returns False when no active key has that name."""
        async with transaction(self.db) as repo:
            row = await repo.api_key_by_name(name)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self.clock.now()
        return True
