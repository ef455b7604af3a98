"""Who may read what: the caller's key and the subject's grant, from the token cache or one
query, checked in one order (401, 403, 404). Every use of a token (a read, a check, a
revocation, a gateway call) starts here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from tiktok_auth_service import errors
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import Database, lost_connection
from tiktok_auth_service.models.grants import GrantStatus
from tiktok_auth_service.repository import (
    GrantReader,
    GrantRow,
    TokenRow,
    read_account_token,
    read_advertiser_token,
)
from tiktok_auth_service.tokens.cache import TokenCache


@dataclass(slots=True)
class Caller:
    """Who asked, filled in by the read once the key is known: the API key's name (never the
    key), what the access log and the audit call the `caller`. The HTTP layer hands one in and
    reads it back, even on errors."""

    name: str | None = None


def read_outcome(exc: BaseException) -> str:
    """The metrics outcome of a read that raised `exc`: the error's code, `cancelled` (the
    caller went away), `database_unavailable` or `error`."""
    if isinstance(exc, errors.ServiceError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "database_unavailable" if lost_connection(exc) else "error"


# What a read asks for: the flows' names (models.Flow), in the cache's keys and the metrics too.
SubjectKind = Literal["advertiser", "tiktok_account"]
_READERS: dict[SubjectKind, GrantReader] = {
    "advertiser": read_advertiser_token,
    "tiktok_account": read_account_token,
}


async def authorize_read(
    db: Database,
    kind: SubjectKind,
    api_key: str | None,
    subject: str,
    caller: Caller | None = None,
    cache: TokenCache | None = None,
) -> TokenRow:
    """The caller and the subject's grant, from `cache` when it holds them, else one query
    (then kept there); checked by `authorized`. Raises Unauthenticated, Forbidden,
    NotConnected. Writes (revocation) pass no cache: they decide on what is stored now."""
    if not api_key:
        raise errors.Unauthenticated()
    key_hash = digest(api_key)
    if cache is None:
        row = await _READERS[kind](db, key_hash, subject)
    else:
        row = cache.lookup(kind, key_hash, subject) or await cache.fetch(
            kind, key_hash, subject, lambda: _READERS[kind](db, key_hash, subject)
        )
    if row is None:
        raise errors.Unauthenticated()
    return authorized(row, kind, subject, caller)


def authorized(row: TokenRow, kind: SubjectKind, subject: str, caller: Caller | None) -> TokenRow:
    """401, 403 and 404 in that order: a restricted key learns nothing about subjects outside
    its list for that kind. `caller` learns the key's name as soon as the key is known."""
    if caller is not None:
        caller.name = row.caller.name
    if not row.caller.may_read(kind, subject):
        raise errors.Forbidden()
    if row.grant is None:
        raise errors.NotConnected(f"{subject} is not connected.")
    return row


def servable(row: TokenRow) -> GrantRow:
    """The row's grant; raises ReauthorizationRequired unless it serves tokens."""
    if row.grant is None or row.grant.status != GrantStatus.ACTIVE:
        raise errors.ReauthorizationRequired()
    return row.grant
