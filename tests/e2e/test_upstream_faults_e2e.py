"""TikTok failing as it does in production, on every call the service makes to it: timeouts (the
emulator holds the call past TIKTOK_TIMEOUT_SECONDS), HTTP 5xx with an HTML body, a burst of
50000 (system error) and a storm of 40100 (rate limit).

For each: every answer is a documented problem (or a browser's error page), never a 500; TikTok
is called exactly as often as the retry policy allows; no request outlives its deadline; no
grant is lost or marked dead; and once TikTok is back everything works again and nothing is
left over: no asyncio task, no TikTok connection, no database connection in use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import Browser, EmulatorAdmin, ShiftClock, api_key, issued_tokens
from tests.fixtures import Canaries, bearer
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.config import Settings
from tiktok_auth_service.lease import failure_backoff
from tiktok_auth_service.service import Service

EXCHANGE = "oauth2/access_token/"
ACCOUNT_EXCHANGE = "tt_user/oauth2/token/"
LIST = "oauth2/advertiser/get/"
REFRESH = "tt_user/oauth2/refresh_token/"
REVOKE = "oauth2/revoke_token/"
ACCOUNT_REVOKE = "tt_user/oauth2/revoke/"

CHECKED = "7100000000000000001"  # checked on request and by the worker, then revoked
NAMED = "7100000000000000002"  # connected while TikTok cannot list its name
OPEN_ID = "-000emulatoropenid0001"

FAULTS: dict[str, dict[str, Any]] = {
    # Held past the client's timeout; when released at the end, answered as a gateway that
    # gave up, so TikTok never acted on it.
    "timeout": {"hang": True, "then": {"http_status": 504}},
    "html_5xx": {"http_status": 503},  # the emulator's default body is an HTML page
    "system_error": {"code": 50000},
    "rate_limit": {"code": 40100},
}

# What a request may spend besides waiting on TikTok: database work on a loaded machine.
MARGIN_SECONDS = 10.0

T = TypeVar("T")


def allowed_calls(settings: Settings, fault: str, *, single_use: bool) -> int:
    """How often the retry policy lets one call reach TikTok under `fault`: every attempt;
    but a single-use call (the refresh, which spends its refresh token) is repeated only when
    TikTok certainly did not act, i.e. throttled."""
    if single_use and fault != "rate_limit":
        return 1
    return settings.tiktok_retry_attempts


@dataclass(frozen=True)
class InUse:
    """What a leak would leave behind."""

    tasks: int
    tiktok_connections: int
    read_pool: int
    write_pool: int

    def within(self, limit: InUse) -> bool:
        return all(
            mine <= theirs for mine, theirs in zip(astuple(self), astuple(limit), strict=True)
        )


def in_use(service: Service) -> InUse:
    # The service's one TikTok client; httpcore's pool lists its connections.
    transport = service.tokens.refresher.tiktok._http._transport
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    busy = [c for c in transport._pool.connections if not (c.is_idle() or c.is_closed())]
    pools = service.db.pool_connections()
    return InUse(len(asyncio.all_tasks()), len(busy), pools["read"][0], pools["write"][0])


async def steady(service: Service) -> InUse:
    """The counts at rest: the same in three samples in a row (the audit flush, every second,
    briefly holds a connection)."""
    samples = [in_use(service)]
    while len(samples) < 3 or len(set(samples[-3:])) > 1:
        await asyncio.sleep(0.02)
        samples.append(in_use(service))
    return samples[-1]


async def settled(service: Service, before: InUse) -> InUse:
    """Wait (bounded) until nothing is in use beyond `before`."""
    deadline = time.monotonic() + 10
    while not (now := in_use(service)).within(before):
        if time.monotonic() > deadline:
            tasks = sorted(repr(task.get_coro()) for task in asyncio.all_tasks())
            raise AssertionError(f"left over: {now} (before: {before}); tasks: {tasks}")
        await asyncio.sleep(0.05)
    return now


def unavailable(response: httpx.Response, *, page: bool = False) -> str:
    """A documented 503 `upstream_unavailable` with Retry-After (as a page for browsers)."""
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    if page:
        assert response.headers["content-type"].startswith("text/html")
        assert "upstream_unavailable" in response.text
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "upstream_unavailable"
    return "503 upstream_unavailable"


@dataclass
class Faults:
    """One kind of fault, queued at one endpoint exactly as often as the retry policy may
    meet it, around one request."""

    kind: str
    settings: Settings
    admin: EmulatorAdmin
    report: list[str] = field(default_factory=list)

    async def around(
        self,
        label: str,
        endpoint: str,
        request: Callable[[], Awaitable[T]],
        *,
        single_use: bool = False,
        deadline: float | None = None,
    ) -> T:
        """Run `request` with the faults queued; it must end within `deadline` (default: one
        TikTok call with its retries) plus the margin, having called TikTok exactly as often
        as allowed: every fault taken, no call more."""
        allowed = allowed_calls(self.settings, self.kind, single_use=single_use)
        before = (await self.admin.counts()).get(endpoint, 0)
        await self.admin.fault(endpoint, *[FAULTS[self.kind]] * allowed)
        limit = self.settings.tiktok_call_seconds if deadline is None else deadline
        async with asyncio.timeout(limit + MARGIN_SECONDS):
            result = await request()
        made = (await self.admin.counts()).get(endpoint, 0) - before
        assert made == allowed, (endpoint, made, allowed)
        self.report.append(f"{label} {made}/{allowed}")
        return result


async def connect(browser: Browser, hook: dict[str, str], **params: str) -> httpx.Response:
    callback = await browser.approve_at_tiktok("approve", hook, **params)
    return await browser.http.get(callback)


async def grant_of(pg: asyncpg.Connection, subject: str) -> asyncpg.Record:
    row = await pg.fetchrow(
        "SELECT g.* FROM oauth_grant g WHERE g.open_id = $1 OR g.id = "
        "(SELECT grant_id FROM advertiser WHERE advertiser_id = $1)",
        subject,
    )
    assert row is not None
    return row


@pytest.mark.parametrize("kind", list(FAULTS))
async def test_every_tiktok_call_survives(
    kind: str, start_stack: Callable[..., Any], canaries: Canaries, pg: asyncpg.Connection
) -> None:
    clock = ShiftClock()
    async with start_stack(
        clock=clock,
        emulator_config={"qps": 0, "qpm": 0, "qpd": 0},  # only the faults below throttle
        tiktok_timeout_seconds=0.3,
        tiktok_retry_attempts=3,
        tiktok_retry_budget_seconds=1.0,
        # The throttles here are faults, not the app's rate: each call is to take every retry
        # its policy allows. The app-wide cool-down they would start is test_budget.py's.
        tiktok_cool_down_seconds=0,
    ) as (stack, browser, admin):
        settings, service = stack.settings, app_service(stack.service)
        key = await api_key(stack, canaries)
        http = browser.http
        assert (await connect(browser, {"emulator_advertisers": CHECKED})).status_code == 200
        assert (await connect(browser, {}, flow="tiktok_account")).status_code == 200
        await issued_tokens(admin, canaries)
        assert (await http.get(f"/tokens/{CHECKED}", headers=bearer(key))).status_code == 200
        before = await steady(service)
        faults = Faults(kind, settings, admin)
        codes: set[str] = set()

        # The code exchange at /callback, both flows: a page for the browser, JSON otherwise.
        callback = await browser.approve_at_tiktok("approve", {"emulator_advertisers": NAMED})
        page = await faults.around(
            "callback exchange (advertiser)",
            EXCHANGE,
            lambda: http.get(callback, headers={"accept": "text/html"}),
        )
        codes.add(unavailable(page, page=True))
        callback = await browser.approve_at_tiktok("approve", None, flow="tiktok_account")
        answer = await faults.around(
            "callback exchange (account)", ACCOUNT_EXCHANGE, lambda: http.get(callback)
        )
        codes.add(unavailable(answer))

        # The advertiser list right after an exchange is best effort: the grant is stored.
        callback = await browser.approve_at_tiktok("approve", {"emulator_advertisers": NAMED})
        connected = await faults.around("callback list", LIST, lambda: http.get(callback))
        assert connected.status_code == 200, connected.text
        async with service.db.pool.acquire() as connection:
            name = await connection.fetchval(
                "SELECT name FROM advertiser WHERE advertiser_id = $1", NAMED
            )
        assert name is None

        # A read that must refresh first, its token expired.
        await pg.execute(
            "UPDATE oauth_grant SET expires_at = now() - interval '1 minute',"
            " refreshed_at = now() - interval '1 day' WHERE open_id = $1",
            OPEN_ID,
        )
        read = await faults.around(
            "read refresh",
            REFRESH,
            lambda: http.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(key)),
            single_use=True,
            deadline=settings.refresh_wait_seconds,
        )
        codes.add(unavailable(read))

        # The liveness check on request; the token keeps being served meanwhile.
        check = await faults.around(
            "check", LIST, lambda: http.post(f"/tokens/{CHECKED}/check", headers=bearer(key))
        )
        codes.add(unavailable(check))
        assert (await http.get(f"/tokens/{CHECKED}", headers=bearer(key))).status_code == 200

        # The worker: the advertiser list sync (liveness check) and the background refresh.
        await pg.execute(
            "UPDATE oauth_grant SET next_check_at = now() WHERE id = $1",
            (await grant_of(pg, CHECKED))["id"],
        )
        assert await faults.around("worker sync", LIST, service.worker.drain) == 1
        await pg.execute(
            "UPDATE oauth_grant SET refresh_due_at = now() WHERE open_id = $1", OPEN_ID
        )
        assert (
            await faults.around("worker refresh", REFRESH, service.worker.drain, single_use=True)
            == 1
        )

        # Revocation on request, both flows: not confirmed, so nothing is marked revoked.
        revoke = await faults.around(
            "revoke (advertiser)",
            REVOKE,
            lambda: http.delete(f"/tokens/{CHECKED}", headers=bearer(key)),
        )
        codes.add(unavailable(revoke))
        revoke = await faults.around(
            "revoke (account)",
            ACCOUNT_REVOKE,
            lambda: http.delete(f"/tokens/accounts/{OPEN_ID}", headers=bearer(key)),
        )
        codes.add(unavailable(revoke))

        # Nothing lost, nothing marked dead: every grant is active, failures counted.
        statuses = await pg.fetch("SELECT status, failures, lease_until FROM oauth_grant")
        assert sorted(row["status"] for row in statuses) == ["active"] * 3
        assert all(row["lease_until"] is None for row in statuses)
        assert (await grant_of(pg, CHECKED))["failures"] == 2  # /check, then the worker
        account = await grant_of(pg, OPEN_ID)
        assert account["failures"] == 2  # the read, then the worker

        # TikTok is back (held calls answered): everything works again.
        during = in_use(service)
        await admin.release()
        assert (await admin.state())["faults"] == {}
        recheck = await http.post(f"/tokens/{CHECKED}/check", headers=bearer(key))
        assert recheck.status_code == 200, recheck.text
        clock.offset += failure_backoff(account["failures"]) + timedelta(seconds=1)
        refreshed = await http.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(key))
        assert refreshed.status_code == 200, refreshed.text
        await issued_tokens(admin, canaries)
        for path in (f"/tokens/{CHECKED}", f"/tokens/accounts/{OPEN_ID}"):
            gone = await http.delete(path, headers=bearer(key))
            assert (gone.status_code, gone.json()["revoked_now"]) == (200, True), gone.text
        calls = await admin.calls(REFRESH)
        assert calls[-1]["code"] == 0  # the refresh token survived every fault

        after = await settled(service, before)
        print(
            f"\n{kind}: calls/allowed {', '.join(faults.report)}; answers {sorted(codes)}; "
            f"in use before {before}, with the faults {during}, after {after}"
        )
