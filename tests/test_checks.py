"""POST /tokens/{advertiser_id}/check: it spends the TikTok call budget the worker spends
(budget.RateBudget), answers 429 with Retry-After when no slot comes in time, and concurrent
checks of one grant share one call, in this process or across replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import asyncpg
import httpx
import pytest
import respx
from fastapi import FastAPI

from tests.fixtures import APP_ID, TIKTOK_API, Canaries, FakeClock, bearer
from tests.helpers import envelope, new_token, store_advertiser_grant, until
from tests.secret_scan import SecretScan
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.budget import RateBudget
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import Database
from tiktok_auth_service.grants.liveness import CHECK_SLOT_SECONDS
from tiktok_auth_service.metrics import Metrics
from tiktok_auth_service.service import Service, open_service

QPS = 2
ADVERTISERS = [f"71000000000000001{n:02d}" for n in range(10)]


class BudgetTime:
    """The budget's monotonic clock. It stands still until `run()`, so only the slots due now
    come; from then on each wait for a slot moves it to that slot at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.running = asyncio.Event()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await self.running.wait()
        self.now += seconds

    def run(self) -> None:
        self.running.set()


@pytest.fixture
def budget_time() -> BudgetTime:
    return BudgetTime()


@pytest.fixture
async def app(
    settings: Settings,
    clock: FakeClock,
    pg: asyncpg.Connection,
    leak_guard: SecretScan,
    budget_time: BudgetTime,
) -> AsyncIterator[FastAPI]:
    """The service with its TikTok budget on a fake clock, QPS calls a second."""
    await pg.execute("TRUNCATE rate_budget")

    def budget(db: Database) -> RateBudget:
        return RateBudget(
            db,
            APP_ID,
            qps=QPS,
            qpm=QPS * 60,
            metrics=Metrics(),
            clock=budget_time.monotonic,
            sleep=budget_time.sleep,
        )

    application = create_app(settings, clock=clock, budget=budget)
    async with application.router.lifespan_context(application):
        yield application
        leak_guard.metrics(await app_service(application).render_metrics())


@pytest.fixture
def budget(app: FastAPI) -> RateBudget:
    return app_service(app).budget


class TikTok:
    """TikTok's advertiser list, answering each token with its advertiser. `hold()` keeps
    calls waiting until `release()`."""

    def __init__(self, mock: respx.MockRouter) -> None:
        self.advertiser_of: dict[str, str] = {}
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()
        self.released.set()
        self.route = mock.get("/oauth2/advertiser/get/").mock(side_effect=self._answer)

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        self.arrived.set()
        await self.released.wait()  # TikTok is still answering
        advertiser = self.advertiser_of[request.headers["access-token"]]
        listed = [{"advertiser_id": advertiser, "advertiser_name": "Shop"}]
        return httpx.Response(200, json=envelope({"list": listed}))


@pytest.fixture
def tiktok() -> Iterator[TikTok]:
    with respx.mock(base_url=TIKTOK_API, assert_all_called=False, assert_all_mocked=True) as mock:
        yield TikTok(mock)


async def connect(
    service: Service,
    tiktok: TikTok,
    canaries: Canaries,
    advertisers: list[str],
    next_check_at: datetime | None = None,
) -> None:
    """One advertiser grant for each of `advertisers`."""
    for advertiser in advertisers:
        token = new_token()
        canaries.add(token)
        tiktok.advertiser_of[token] = advertiser
        await store_advertiser_grant(service, token, [advertiser], next_check_at=next_check_at)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> bool:
    return any(getattr(record, "event", None) == event for record in caplog.records)


class TestBudget:
    async def test_checks_beyond_the_budget_are_429_with_retry_after(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTok,
        budget: RateBudget,
        budget_time: BudgetTime,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        await connect(service, tiktok, canaries, ADVERTISERS)
        checks = {
            advertiser: asyncio.create_task(
                client.post(f"/tokens/{advertiser}/check", headers=bearer(api_key))
            )
            for advertiser in ADVERTISERS
        }

        async def settled() -> bool:
            # Time stands still: the one slot due now has come, and each check is answered,
            # or waits for its slot.
            answered = sum(task.done() for task in checks.values())
            return tiktok.route.call_count == 1 and answered + budget.waiting == len(checks)

        await until(settled, "every check answered or waiting for its slot", within=30)
        answered = {a: task.result() for a, task in checks.items() if task.done()}
        refused = [a for a, answer in answered.items() if answer.status_code == 429]
        assert refused, "ten checks at once, two calls a second: some must wait too long"
        for advertiser in refused:
            answer = answered[advertiser]
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "rate_limited"
            assert int(answer.headers["retry-after"]) >= 1
        # A check refused leaves its grant free; one waiting for its slot holds its lease.
        leased = await pg.fetchval("SELECT count(*) FROM oauth_grant WHERE lease_until IS NOT NULL")
        assert leased == budget.waiting
        # Only the first slot has come: one call at TikTok, answered.
        assert tiktok.route.call_count == 1
        assert len(answered) - len(refused) == 1

        budget_time.run()
        answers = {a: await task for a, task in checks.items()}
        served = [a for a, answer in answers.items() if answer.status_code == 200]
        assert sorted(served + refused) == sorted(ADVERTISERS)
        assert tiktok.route.call_count == len(served)
        # The slots of the wait a check may make, and the one that came at once.
        assert len(served) <= QPS * CHECK_SLOT_SECONDS + 1
        untouched = await pg.fetchval(
            "SELECT count(*) FROM oauth_grant WHERE lease_until IS NULL AND failures = 0"
        )
        assert untouched == len(ADVERTISERS)

    async def test_the_worker_and_checks_share_one_budget(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTok,
        budget: RateBudget,
        budget_time: BudgetTime,
        clock: FakeClock,
        canaries: Canaries,
        api_key: str,
        pg: asyncpg.Connection,
    ) -> None:
        due, checked = ADVERTISERS[:2], ADVERTISERS[2:4]
        await connect(service, tiktok, canaries, due, next_check_at=clock.now())
        await connect(service, tiktok, canaries, checked)
        drain = asyncio.create_task(service.worker.drain())
        checks = [
            asyncio.create_task(client.post(f"/tokens/{a}/check", headers=bearer(api_key)))
            for a in checked
        ]

        async def settled() -> bool:
            # Time stands still: the one slot due now has come, and each of the other calls
            # waits for its slot.
            made = tiktok.route.call_count
            return made == 1 and made + budget.waiting == len(due) + len(checked)

        await until(settled, "every call made or waiting for its slot", within=30)
        assert tiktok.route.call_count == 1  # the one slot that has come, whoever took it

        budget_time.run()
        answers = await asyncio.gather(*checks)
        assert await drain == 2
        assert [answer.status_code for answer in answers] == [200, 200]
        assert tiktok.route.call_count == 4


class TestConcurrentChecks:
    async def test_two_checks_of_one_advertiser_share_one_call(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTok,
        budget_time: BudgetTime,
        canaries: Canaries,
        api_key: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="tiktok_auth_service")
        (advertiser,) = ADVERTISERS[:1]
        await connect(service, tiktok, canaries, [advertiser])
        budget_time.run()
        tiktok.hold()
        url = f"/tokens/{advertiser}/check"
        first = asyncio.create_task(client.post(url, headers=bearer(api_key)))
        await asyncio.wait_for(tiktok.arrived.wait(), timeout=30)
        second = asyncio.create_task(client.post(url, headers=bearer(api_key)))

        async def joined() -> bool:
            return second.done() or logged(caplog, "liveness_check_shared")

        await until(joined, "the second check joins the first", within=30)
        tiktok.release()
        answers = [await first, await second]
        assert [answer.status_code for answer in answers] == [200, 200], answers[1].text
        assert answers[0].json() == answers[1].json()
        assert tiktok.route.call_count == 1

    async def test_a_check_waits_for_another_replicas_verdict(
        self,
        client: httpx.AsyncClient,
        service: Service,
        tiktok: TikTok,
        budget_time: BudgetTime,
        settings: Settings,
        clock: FakeClock,
        canaries: Canaries,
        api_key: str,
        caplog: pytest.LogCaptureFixture,
        pg: asyncpg.Connection,
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="tiktok_auth_service")
        (advertiser,) = ADVERTISERS[:1]
        await connect(service, tiktok, canaries, [advertiser])
        budget_time.run()
        tiktok.hold()
        here = asyncio.create_task(
            client.post(f"/tokens/{advertiser}/check", headers=bearer(api_key))
        )
        await asyncio.wait_for(tiktok.arrived.wait(), timeout=30)
        async with open_service(settings, clock) as replica:
            there = asyncio.create_task(replica.tokens.check_advertiser_token(api_key, advertiser))

            async def waiting() -> bool:
                return there.done() or logged(caplog, "liveness_check_waiting")

            await until(waiting, "the replica waits for the check under way", within=30)
            tiktok.release()
            answer = await here
            token = await there
        assert answer.status_code == 200, answer.text
        assert token.access_token == answer.json()["access_token"]
        assert tiktok.route.call_count == 1
        assert await pg.fetchval("SELECT lease_until FROM oauth_grant") is None
