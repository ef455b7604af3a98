"""What a key may read: the advertisers and TikTok accounts connected, without their tokens
(the bodies: `schemas.py`).

Pages are cut by the (flow, subject id) of their last
item: the `next` cursor is that pair, base64url-encoded JSON. It is opaque to callers, so its
form may change; a cursor that does not decode is a 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from tiktok_auth_service import errors
from tiktok_auth_service.connections.schemas import Connection, ConnectionPage, LastFailure
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import Database
from tiktok_auth_service.models.grants import Flow, GrantStatus
from tiktok_auth_service.repository import ConnectionRow, read_connections

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def tag_filter(filters: list[str]) -> dict[str, str]:
    """The tags `key:value` filters ask for, as one object. Raises ValidationFailed for one key
    asked with two values (a connection has one value per key)."""
    wanted: dict[str, str] = {}
    for item in filters:
        key, _, value = item.partition(":")
        if wanted.setdefault(key, value) != value:
            raise errors.ValidationFailed(f"tag: {key!r} is asked with two values.")
    return wanted


def encode_cursor(flow: str, subject_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([flow, subject_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises ValidationFailed for anything `encode_cursor` did not make."""
    try:
        value: Any = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or value[0] not in tuple(Flow)
        or not isinstance(value[1], str)
    ):
        raise errors.ValidationFailed("next: not a cursor from a previous page of this list.")
    return value[0], value[1]


@dataclass(eq=False)
class Connections:
    db: Database

    async def list(
        self,
        api_key: str | None,
        *,
        status: GrantStatus | None = None,
        flow: Flow | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
        healthy: bool | None = None,
        tags: list[str] | None = None,
    ) -> ConnectionPage:
        """A page of what this key may read: everything for an unrestricted key, only its
        listed advertisers and accounts for a restricted one; `healthy` (served, and no
        failure since the last success) or not; carrying every `key:value` of `tags`.
        Raises Unauthenticated, ValidationFailed (a bad cursor or tag filter)."""
        if not api_key:
            raise errors.Unauthenticated()
        after = decode_cursor(cursor) if cursor is not None else None
        rows = await read_connections(
            self.db,
            digest(api_key),
            status=None if status is None else str(status),
            flow=None if flow is None else str(flow),
            after=after,
            limit=limit + 1,  # one more than asked: is there a next page?
            healthy=healthy,
            tags=tag_filter(tags or []),
        )
        if rows is None:
            raise errors.Unauthenticated()
        page = rows[:limit]
        more = len(rows) > limit
        return ConnectionPage(
            items=[_connection(row) for row in page],
            next=encode_cursor(page[-1].flow, page[-1].subject_id) if more else None,
        )


def _connection(row: ConnectionRow) -> Connection:
    return Connection(
        flow=Flow(row.flow),
        subject_id=row.subject_id,
        status=GrantStatus(row.status),
        name=row.name,
        scope=list(row.scope),
        expires_at=row.expires_at,
        refresh_expires_at=row.refresh_expires_at,
        last_checked_at=row.last_checked_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        connected_by=row.connected_by,
        end_user=row.end_user,
        tags=row.tags,
        last_failure=None
        if row.last_failure_at is None or row.last_failure_message is None
        else LastFailure(
            at=row.last_failure_at,
            tiktok_code=row.last_failure_code,
            message=row.last_failure_message,
            attempts=row.failures,
        ),
        next_attempt_at=row.next_attempt_at,
    )
