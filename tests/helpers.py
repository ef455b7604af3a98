"""Steps shared by the service tests: TikTok's answers (envelopes, the TikTok-account routes),
authorization round trips, and grants stored through the service's own sealing and repository.

Constants and test doubles that need no app are in fixtures.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
import uvicorn
from pydantic import SecretStr

from tests.fixtures import FRONTEND, OPEN_ID, Canaries, FakeClock
from tiktok_auth_service.grants.refresh import write_account_tokens
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus
from tiktok_auth_service.repository import Repository
from tiktok_auth_service.service import Service
from tiktok_auth_service.tiktok import IssuedAccountTokens


def envelope(
    data: dict[str, Any] | None = None, code: int = 0, message: str = "OK"
) -> dict[str, Any]:
    """A TikTok response body: always HTTP 200, success decided by `code`."""
    return {
        "code": code,
        "message": message,
        "request_id": "20261124120000" + secrets.token_hex(10).upper(),
        "data": data if data is not None else {},
    }


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


class _Forms(HTMLParser):
    """The forms of a page: (method, action, {name: value} of its inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((values.get("method", "get"), values.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1][2][values["name"]] = values.get("value", "")


def the_form(page: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """The one form of a page of the service: (method, action, fields)."""
    parser = _Forms()
    parser.feed(page.text)
    [form] = parser.forms
    return form


async def continue_to_tiktok(client: httpx.AsyncClient, page: httpx.Response) -> httpx.Response:
    """Click the button of /authorize's page, as a browser submits its form; returns the
    service's answer (a redirect to TikTok's consent page, unless refused)."""
    assert page.status_code == 200, page.text
    method, action, fields = the_form(page)
    assert method == "post"
    return await client.post(action, data=fields)


async def start_through(client: httpx.AsyncClient, url: str, **params: str) -> httpx.Response:
    """Open /authorize (`url`, with `params`) and continue to TikTok from its page."""
    # (httpx's `params=` replaces a query string the URL already has.)
    page = await client.get(url, params=params) if params else await client.get(url)
    return await continue_to_tiktok(client, page)


async def start_authorization(client: httpx.AsyncClient, **params: str) -> str:
    """Open /authorize, continue to TikTok from its page, and return the state TikTok would
    echo back."""
    response = await start_through(client, "/authorize", **params)
    assert response.status_code == 303, response.text
    return query_of(response.headers["location"])["state"]


def new_token() -> str:
    return secrets.token_hex(20)


async def store_advertiser_grant(
    service: Service,
    token: str,
    advertisers: list[str],
    status: GrantStatus = GrantStatus.ACTIVE,
    next_check_at: datetime | None = None,
) -> uuid.UUID:
    """An advertiser grant stored the way the service stores one: sealed, through the
    repository; its liveness check is due at `next_check_at` (default: in six hours)."""
    now = datetime.now(UTC)
    grant = Grant(
        id=uuid.uuid4(),
        flow=Flow.ADVERTISER,
        key_id="",
        access_token_enc=b"",
        scope=[4],
        status=GrantStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        advertiser_ids=sorted(advertisers),
        next_check_at=next_check_at or now + timedelta(hours=6),
    )
    service.sealer.seal(grant, SecretStr(token))
    async with service.db.session() as session, session.begin():
        repo = Repository(session)
        await repo.add(grant)
        await repo.assign_advertisers(grant.id, advertisers, now)
        if status != GrantStatus.ACTIVE:
            await repo.set_grant_status(grant, status, now)
    return grant.id


async def store_account_grant(
    service: Service,
    open_id: str,
    expires_at: datetime,
    refresh_due_at: datetime | None = None,
) -> uuid.UUID:
    """A TikTok-account grant stored the way the callback stores one: the issued pair written
    by `write_account_tokens`, added through the repository. Its tokens are random; the worker
    finds it due at `refresh_due_at` (default: as `write_account_tokens` computes it)."""
    now = datetime.now(UTC)
    grant = Grant(
        id=uuid.uuid4(),
        flow=Flow.TIKTOK_ACCOUNT,
        open_id=open_id,
        key_id="",
        access_token_enc=b"",
        scope=[],
        status=GrantStatus.ACTIVE,
        version=0,
        created_at=now,
        updated_at=now,
        last_checked_at=now,
    )
    issued = IssuedAccountTokens(
        access_token=SecretStr("act." + new_token()),
        refresh_token=SecretStr("rft." + new_token()),
        open_id=open_id,
        scope=["user.info.basic"],
        token_type="Bearer",
        expires_at=expires_at,
        refresh_expires_at=expires_at + timedelta(days=365),
        request_id="20261124120000" + secrets.token_hex(10).upper(),
    )
    write_account_tokens(grant, issued, service.sealer, now, service.settings.refresh_ahead)
    if refresh_due_at is not None:
        grant.refresh_due_at = refresh_due_at
    async with service.db.session() as session, session.begin():
        await Repository(session).add(grant)
    return grant.id


class TikTokAccounts:
    """respx routes for the tt_user endpoints, issuing rotating token pairs like TikTok."""

    def __init__(self, mock: respx.MockRouter, canaries: Canaries, clock: FakeClock) -> None:
        self.canaries = canaries
        self.clock = clock
        self.granted_at = clock.now()
        self.refresh_tokens: list[str] = []
        self.access_tokens: list[str] = []
        self.exchange = mock.post("/tt_user/oauth2/token/").mock(side_effect=self.issue)
        self.refresh = mock.post("/tt_user/oauth2/refresh_token/").mock(side_effect=self.issue)
        self.revoke = mock.post("/tt_user/oauth2/revoke/").mock(
            return_value=httpx.Response(200, json=envelope())
        )

    def refresh_fails(self, code: int) -> None:
        """From now on TikTok answers every refresh with this error code."""
        self.refresh.mock(
            side_effect=None,
            return_value=httpx.Response(200, json=envelope(code=code, message="refused")),
        )

    def issue(self, request: httpx.Request) -> httpx.Response:
        access, refresh = "act." + new_token(), "rft." + new_token()
        self.canaries.add(access, refresh)
        self.access_tokens.append(access)
        self.refresh_tokens.append(refresh)
        return httpx.Response(
            200,
            json=envelope(
                {
                    "access_token": access,
                    "token_type": "Bearer",
                    "scope": "user.info.basic,video.list",
                    "expires_in": 86400,
                    "refresh_token": refresh,
                    # Counts down from the original grant, as TikTok's does.
                    "refresh_token_expires_in": int(
                        (self.granted_at + timedelta(days=365) - self.clock.now()).total_seconds()
                    ),
                    "open_id": OPEN_ID,
                }
            ),
        )


async def connect_account(client: httpx.AsyncClient) -> httpx.Response:
    """Authorize the TikTok account of `TikTokAccounts`; returns the service's /callback answer."""
    state = await start_authorization(client, flow="tiktok_account", return_to=f"{FRONTEND}/ok")
    return await client.get("/callback", params={"code": "tt-code", "state": state})


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float) -> float:
    """Poll `check` until it holds; returns how long that took. Fails after `within` s."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def spawn_serve(
    port: int,
    workers: int,
    env: dict[str, str],
    preexec_fn: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """A real `serve --workers N` on `port`, in this test run's environment (less its metrics
    directory and log format) with the settings `env`; its stderr is piped for the caller to
    read, starting with the start-up lines it waits for. `preexec_fn` runs in the child before
    `serve` starts (a resource limit, say)."""
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "LOG_FORMAT")
    }
    command = ["serve", "--workers", str(workers), "--port", str(port)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiktok_auth_service",
        *command,
        env={**inherited, **env},
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=preexec_fn,
    )


@contextlib.asynccontextmanager
async def served_on_loopback(app: Any) -> AsyncIterator[str]:
    """An ASGI app served by a real uvicorn server on an ephemeral loopback port, in the
    test's own event loop; yields its base URL."""
    # log_config=None: uvicorn's records reach the root logger (and the secret scan).
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    # Bind and listen before starting, so the kernel queues the first requests until uvicorn
    # accepts them: no need to poll for readiness.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
