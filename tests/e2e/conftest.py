"""End-to-end fixtures: the service and the TikTok emulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import httpx
import pytest

from tests.fixtures import KEYS, Canaries
from tests.helpers import free_port, spawn_serve, start_through
from tests.openapi_check import OpenApiCheck
from tests.secret_scan import SecretScan
from tiktok_auth_dev.stack import Stack, run_stack
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.authorization import Origin
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.tiktok import IssuedAccountTokens

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every end-to-end test (real servers on loopback, the emulator, a browser) is one of the
    long runs: `-m "not slow"` leaves them out."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)


class ShiftClock:
    """Real time plus an offset the test moves, mirroring the emulator's clock."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class EmulatorAdmin:
    """The emulator's private admin API."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(f"/_emulator/{path}", json=body or {})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def advance(self, seconds: float) -> None:
        await self._post("clock/advance", {"seconds": seconds})

    async def fault(self, endpoint: str, *responses: dict[str, Any]) -> None:
        await self._post("faults", {"endpoint": endpoint, "responses": list(responses)})

    async def calls(self, endpoint: str) -> list[dict[str, Any]]:
        response = await self.http.get("/_emulator/calls", params={"endpoint": endpoint})
        calls: list[dict[str, Any]] = response.json()["calls"]
        return calls

    async def counts(self) -> dict[str, int]:
        """Calls per endpoint so far."""
        counts: dict[str, int] = (await self.http.get("/_emulator/calls")).json()["counts"]
        return counts

    async def per_second(self, endpoint: str) -> dict[int, int]:
        """Calls of `endpoint` by the wall-clock second they arrived in (epoch seconds)."""
        response = await self.http.get("/_emulator/calls/per_second", params={"endpoint": endpoint})
        return {int(second): n for second, n in response.json()["per_second"].items()}

    async def throttle(self, seconds: float) -> float:
        """40100 to every API call for `seconds`; when that ends, on the emulator's clock."""
        until: float = (await self._post("throttle", {"seconds": seconds}))["until"]
        return until

    async def now(self) -> float:
        """The emulator's clock (epoch seconds)."""
        now: float = (await self.http.get("/_emulator/clock")).json()["now"]
        return now

    async def wait_hanging(self, at_least: int = 1, endpoint: str | None = None) -> None:
        params: dict[str, Any] = {"at_least": at_least, "timeout": 20}
        if endpoint is not None:
            params["endpoint"] = endpoint
        response = await self.http.get("/_emulator/hanging", params=params)
        assert response.json()["reached"], response.text

    async def release(self, endpoint: str | None = None) -> None:
        await self._post("hanging/release", {} if endpoint is None else {"endpoint": endpoint})

    async def cancel(self, access_token: str, advertiser_id: str | None = None) -> None:
        """The advertiser side cancels the authorization (or withdraws one advertiser)."""
        body = {"access_token": access_token}
        if advertiser_id is not None:
            body["advertiser_id"] = advertiser_id
        await self._post("advertisers/cancel", body)

    async def grant(self, access_token: str, advertiser_id: str) -> None:
        """The advertiser side adds an advertiser to a live token."""
        await self._post(
            "advertisers/grant", {"access_token": access_token, "advertiser_id": advertiser_id}
        )

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = (await self.http.get("/_emulator/state")).json()
        return result


class Browser:
    """A cookie-keeping client that clicks through consent via the emulator's test hook,
    starting from a connect link that an internal caller (with `api_key`) opened for it."""

    def __init__(self, stack: Stack, api_key: str, scan: SecretScan) -> None:
        self.stack = stack
        self.api_key = api_key
        self.http = httpx.AsyncClient(
            base_url=stack.service_url,
            timeout=30,
            event_hooks={
                "response": [
                    OpenApiCheck(stack.service.openapi()).on_response,
                    scan.response_hook(stack.service_url),
                ]
            },
        )

    async def connect_link(self, **params: str) -> str:
        """POST /connect-sessions with `params` (flow, return_to, end_user) as the body."""
        opened = await self.http.post(
            "/connect-sessions",
            json=params,
            headers={"authorization": f"Bearer {self.api_key}"},
        )
        assert opened.status_code == 201, opened.text
        url: str = opened.json()["url"]
        return url

    async def start(self, link: str) -> httpx.Response:
        """Open a connect link and click *Continue to TikTok* on its page; the service's
        answer, not followed (a redirect to TikTok's consent page, unless refused)."""
        return await start_through(self.http, link)

    async def approve_at_tiktok(
        self, decision: str = "approve", hook: dict[str, str] | None = None, **params: str
    ) -> str:
        """/authorize, then TikTok's consent (through the emulator's test hook); returns the
        /callback URL TikTok redirects to, not yet followed.

        `hook` adds emulator test-hook parameters (e.g. `emulator_open_id`) to the consent step.
        """
        start = await self.start(await self.connect_link(**params))
        assert start.status_code == 303, start.text
        extra = httpx.QueryParams({"emulator_decision": decision, **(hook or {})})
        consent = await self.http.get(f"{start.headers['location']}&{extra}")
        assert consent.status_code == 302, consent.text
        location: str = consent.headers["location"]
        return location

    async def consent(self, decision: str = "approve", **params: str) -> httpx.Response:
        """The whole browser round trip, ending with the service's answer to /callback."""
        return await self.http.get(await self.approve_at_tiktok(decision, None, **params))


class Running(NamedTuple):
    stack: Stack
    browser: Browser
    admin: EmulatorAdmin


@pytest.fixture
def start_stack(
    migrated: str, pg: asyncpg.Connection, canaries: Canaries, leak_guard: SecretScan
) -> Callable[..., contextlib.AbstractAsyncContextManager[Running]]:
    """Start the service and the emulator (on a freshly emptied database), with a browser and
    the emulator's admin API ready to use. The browser's answers from the service, and the
    service's metrics when the block ends, go to the secret scan."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Running]:
        overrides.setdefault("tiktok_retry_base_delay", 0.05)
        overrides.setdefault("worker_enabled", False)
        async with (
            run_stack(database_url=migrated, encryption_keys=KEYS, **overrides) as stack,
            httpx.AsyncClient(base_url=stack.emulator_url, timeout=60) as admin_http,
        ):
            canaries.add("emulator-secret")
            browser = Browser(stack, await api_key(stack, canaries, "e2e-browser"), leak_guard)
            async with browser.http:
                yield Running(stack, browser, EmulatorAdmin(admin_http))
            leak_guard.metrics(await app_service(stack.service).render_metrics())

    return start


async def api_key(stack: Stack, canaries: Canaries, name: str = "e2e") -> str:
    created = await app_service(stack.service).api_keys.create(name, [])
    key = created.key.get_secret_value()
    canaries.add(key)
    return key


async def issued_tokens(admin: EmulatorAdmin, canaries: Canaries) -> dict[str, Any]:
    """The emulator's state, with every token it issued registered as a log canary."""
    state = await admin.state()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("access_token", "refresh_token") and isinstance(value, str):
                    canaries.add(value)
                elif key == "retired_refresh_tokens":
                    canaries.add(*value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(state)
    return state


async def seed_account_grants(stack: Any, open_ids: list[str]) -> None:
    """Authorize many TikTok accounts at the emulator and store their grants in one go.

    (The browser flow is covered elsewhere; here only the worker is under test.)
    """
    flow = app_service(stack.service).authorization.flows[Flow.TIKTOK_ACCOUNT]
    redirect = stack.settings.tiktok_redirect_uri
    gate = asyncio.Semaphore(16)

    async def authorize(http: httpx.AsyncClient, open_id: str) -> IssuedAccountTokens:
        async with gate:
            consent = await http.get(
                "/v2/auth/authorize/",
                params={
                    "client_key": stack.settings.tiktok_app_id,
                    "response_type": "code",
                    "scope": "user.info.basic",
                    "redirect_uri": redirect,
                    "state": "s",
                    "emulator_decision": "approve",
                    "emulator_open_id": open_id,
                },
            )
            code = httpx.URL(consent.headers["location"]).params["code"]
            issued: IssuedAccountTokens = await flow.exchange(code)
            return issued

    async with httpx.AsyncClient(base_url=stack.emulator_url) as http:
        granted = await asyncio.gather(*(authorize(http, open_id) for open_id in open_ids))
    for account in granted:
        await flow.store(account, Origin())


async def start_serve(
    stack: Stack, metrics_dir: Path, workers: int, **env: str
) -> tuple[asyncio.subprocess.Process, str, list[bytes]]:
    """`serve --workers N` as separate OS processes on the stack's database and emulator (its
    metrics files in `metrics_dir`: a killed process cannot remove a directory of its own;
    `env`: more settings). Returns once every server process has started: the process, its
    URL and what it wrote to stderr so far (the caller reads the rest)."""
    port = free_port()
    settings = stack.settings
    process = await spawn_serve(
        port,
        workers,
        {
            "TIKTOK_APP_ID": settings.tiktok_app_id,
            "TIKTOK_APP_SECRET": settings.tiktok_app_secret.get_secret_value(),
            "TIKTOK_REDIRECT_URI": settings.tiktok_redirect_uri,
            "TIKTOK_API_BASE_URL": settings.tiktok_api_base_url,
            "DATABASE_URL": settings.database_url.get_secret_value(),
            "TOKEN_ENCRYPTION_KEYS": KEYS,
            "WORKER_ENABLED": "false",
            "TIKTOK_RETRY_ATTEMPTS": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **env,
        },
    )
    assert process.stderr is not None
    lines = []
    started = 0
    while started < workers:
        line = await process.stderr.readline()
        assert line, "serve exited during start-up"
        lines.append(line)
        started += b"started: process" in line
    return process, f"http://127.0.0.1:{port}", lines
