"""The refresh worker (tiktok_auth_service.scheduling): which grants it refreshes, how it backs
off, how its lanes share a drain and stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import respx

from tests.fixtures import TIKTOK_API, Canaries, FakeClock, make_settings
from tests.helpers import TikTokAccounts, connect_account, envelope, start_authorization
from tiktok_auth_service.scheduling import Pacer, RefreshWorker
from tiktok_auth_service.service import Service


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

        tiktok.refresh.mock(
            side_effect=None,
            return_value=httpx.Response(200, json=envelope(code=50002, message="busy")),
        )
        clock.advance(hours=23, minutes=50)
        assert await worker.drain() == 1
        assert await worker.drain() == 0  # failed recently: left alone for a minute
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
        tiktok.granted_at = clock.now()
        state = await start_authorization(client, flow="tiktok_account")
        tiktok.exchange.side_effect = lambda request: TikTokAccounts._issue(tiktok, request)
        await client.get("/callback", params={"code": "c2", "state": state})
        # The same open_id comes back from the fake, so make a second account by hand.
        await pg.execute(
            "INSERT INTO oauth_grant SELECT gen_random_uuid(), flow, '-000other', key_id,"
            " access_token_enc, refresh_token_enc, expires_at - interval '1 minute',"
            " refresh_expires_at, scope, status, version, created_at, updated_at,"
            " last_checked_at, refresh_failed_at FROM oauth_grant"
        )
        # The copy's ciphertexts are bound to the original row: they will not decrypt.
        worker = service.worker
        clock.advance(hours=23, minutes=50)
        assert await worker.drain() == 2
        assert tiktok.refresh.call_count == 1
        failed = await pg.fetchval(
            "SELECT refresh_failed_at IS NOT NULL FROM oauth_grant WHERE open_id = '-000other'"
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


class _OneLaneFails:
    """Claims where the first fails while a second lane is inside its TikTok call."""

    def __init__(self) -> None:
        self.calls = 0
        self.completed = 0
        self.second_in_flight = asyncio.Event()
        self.release = asyncio.Event()

    async def refresh_one_due(self) -> bool:
        self.calls += 1
        if self.calls == 1:
            await self.second_in_flight.wait()
            asyncio.get_running_loop().call_soon(self.release.set)
            raise ConnectionResetError("database connection lost")
        if self.calls == 2:
            self.second_in_flight.set()
            await self.release.wait()  # TikTok is answering
            self.completed += 1
            return True
        return False


async def test_a_failing_lane_does_not_cancel_a_refresh_in_flight(
    service: Service, migrated: str, clock: FakeClock
) -> None:
    claims = _OneLaneFails()
    settings = make_settings(migrated, worker_qps=50, worker_concurrency=2)
    worker = RefreshWorker(settings, service.db, service.worker.refresher, Pacer(50), clock)
    worker.refresh_one_due = claims.refresh_one_due  # type: ignore[method-assign]
    assert await worker.drain() == 1
    assert claims.completed == 1
