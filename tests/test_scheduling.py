"""The worker (tiktok_auth_service.grants.worker): which grants it refreshes, how it backs off,
how one failing call leaves the others alone, how it stops."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import cast

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import TIKTOK_API, Canaries, FakeClock, make_settings
from tests.helpers import TikTokAccounts, connect_account, store_account_grant
from tiktok_auth_service.grants.refresh import AccountRefresher
from tiktok_auth_service.models.grants import Grant
from tiktok_auth_service.service import Service

# These tests start authorizations at /authorize directly: connect sessions are not required.
pytestmark = pytest.mark.settings(connect_sessions_required=False)


@pytest.fixture
def tiktok(canaries: Canaries, clock: FakeClock) -> Iterator[TikTokAccounts]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield TikTokAccounts(mock, canaries, clock)


class TestWorker:
    async def test_refreshes_only_due_grants_and_backs_off_failures(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        service: Service,
        clock: FakeClock,
        migrated: str,
    ) -> None:
        await connect_account(client)
        worker = service.worker
        assert await worker.drain() == 0  # fresh: nothing due
        clock.advance(hours=23, minutes=50)  # within leeway + ahead (5 + 10 minutes)
        assert await worker.drain() == 1
        assert tiktok.refresh.call_count == 1
        assert await worker.drain() == 0  # refreshed: no longer due

        tiktok.refresh_fails(50002)
        clock.advance(hours=23, minutes=50)
        assert await worker.drain() == 1
        assert await worker.drain() == 0  # failed recently: left alone for its backoff
        clock.advance(seconds=61)
        assert await worker.drain() == 1

    async def test_a_broken_grant_does_not_block_the_others(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        service: Service,
        clock: FakeClock,
        migrated: str,
        pg: asyncpg.Connection,
    ) -> None:
        await connect_account(client)
        broken = await store_account_grant(service, "-000other", clock.now() + timedelta(hours=1))
        # A ciphertext moved from the access column no longer opens as the refresh token.
        await pg.execute(
            "UPDATE oauth_grant SET refresh_token_enc = access_token_enc,"
            " refresh_due_at = $2 WHERE id = $1",
            broken,
            clock.now(),
        )
        worker = service.worker
        clock.advance(hours=23, minutes=50)
        assert await worker.drain() == 2
        assert tiktok.refresh.call_count == 1
        failed = await pg.fetchval(
            "SELECT refresh_failed_at IS NOT NULL FROM oauth_grant WHERE id = $1", broken
        )
        assert failed
        assert await worker.drain() == 0

    async def test_drain_stops_when_asked(
        self,
        client: httpx.AsyncClient,
        tiktok: TikTokAccounts,
        service: Service,
        clock: FakeClock,
        migrated: str,
    ) -> None:
        await connect_account(client)
        clock.advance(hours=23, minutes=50)
        stop = asyncio.Event()
        stop.set()
        worker = service.worker
        assert await worker.drain(stop) == 0
        assert not tiktok.refresh.called


class _OneCallFails:
    """Refreshes where the first fails while the second is inside its TikTok call."""

    def __init__(self) -> None:
        self.calls = 0
        self.completed = 0
        self.second_in_flight = asyncio.Event()
        self.release = asyncio.Event()

    async def refresh_leased(self, grant: Grant) -> Grant:
        self.calls += 1
        if self.calls == 1:
            await self.second_in_flight.wait()
            asyncio.get_running_loop().call_soon(self.release.set)
            raise ConnectionResetError("database connection lost")
        self.second_in_flight.set()
        await self.release.wait()  # TikTok is answering
        self.completed += 1
        return grant


async def test_a_failing_call_does_not_cancel_a_refresh_in_flight(
    service: Service, migrated: str, clock: FakeClock, pg: asyncpg.Connection
) -> None:
    for open_id in ("-000one", "-000two"):
        await store_account_grant(
            service, open_id, clock.now() + timedelta(hours=1), refresh_due_at=clock.now()
        )
    calls = _OneCallFails()
    settings = make_settings(migrated, worker_concurrency=2)
    worker = dataclasses.replace(
        service.worker, settings=settings, refresher=cast(AccountRefresher, calls)
    )
    assert await worker.drain() == 2
    assert calls.completed == 1
