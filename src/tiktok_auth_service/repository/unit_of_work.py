"""One unit of work: `transaction` opens a session in a transaction and yields the repository
over it; the block's end commits, an exception rolls back. Nothing in the repository commits;
it flushes at most."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from tiktok_auth_service.db import Database
from tiktok_auth_service.models.callers import ApiKey
from tiktok_auth_service.models.connect import ConnectSession, OAuthState
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.repository.callers import CallerQueries
from tiktok_auth_service.repository.connect import ConnectQueries
from tiktok_auth_service.repository.grants import GrantQueries
from tiktok_auth_service.repository.outbox import OutboxQueries
from tiktok_auth_service.repository.work import WorkQueries


class Repository(GrantQueries, ConnectQueries, CallerQueries, OutboxQueries, WorkQueries):
    """The write paths' SQL over one session, one aggregate per module: grants and advertisers
    (`grants.py`), connect sessions and states (`connect.py`), callers' keys (`callers.py`), the
    webhook outbox (`outbox.py`), the worker's claims (`work.py`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: ConnectSession | OAuthState | Grant | ApiKey) -> None:
        self.session.add(row)
        await self.session.flush()


@contextlib.asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[Repository]:
    """The repository over a new session, inside one transaction."""
    async with db.session() as session, session.begin():
        yield Repository(session)
