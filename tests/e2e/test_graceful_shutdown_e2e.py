"""SIGTERM while requests are in flight, on the real `serve` process against the emulator and
PostgreSQL: new connections are refused at once, every request in flight gets its full answer,
a refresh that a read left running lands, and the process exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.e2e.conftest import EmulatorAdmin, issued_tokens
from tests.fixtures import KEYS, Canaries, bearer
from tests.helpers import free_port, spawn_serve
from tiktok_auth_dev.stack import bind_socket, serving
from tiktok_auth_service.authorization import Origin
from tiktok_auth_service.config import Settings
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.service import open_service
from tiktok_emulator import EmulatorApp, EmulatorConfig, create_emulator_app

LIST = "oauth2/advertiser/get/"
REFRESH = "tt_user/oauth2/refresh_token/"
ADVERTISERS = ["7100000000000000001", "7100000000000000002"]
OPEN_ID = "-000emulatoropenid0001"
SECRET = "emulator-secret"  # the emulator's well-known dev credential


class Stderr:
    """The process's stderr lines, read as they come."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self.reader = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            async with self._changed:
                self.lines.append(line.decode())
                self._changed.notify_all()

    async def wait_for(self, text: str) -> None:
        try:
            async with asyncio.timeout(60), self._changed:
                await self._changed.wait_for(lambda: any(text in line for line in self.lines))
        except TimeoutError:
            raise AssertionError(f"never logged {text!r}:\n{''.join(self.lines)}") from None


async def code_from(http: httpx.AsyncClient, path: str, params: dict[str, str], name: str) -> str:
    """Consent at the emulator through its test hook; the code it redirects with."""
    consent = await http.get(path, params={**params, "state": "s", "emulator_decision": "approve"})
    assert consent.status_code == 302, consent.text
    return httpx.URL(consent.headers["location"]).params[name]


async def seed(settings: Settings, emulator: httpx.AsyncClient) -> str:
    """Two advertiser grants and one account grant, stored as the callback would; an API key."""
    async with open_service(settings) as service:
        flows = service.authorization.flows
        for advertiser in ADVERTISERS:
            code = await code_from(
                emulator,
                "/portal/auth",
                {
                    "app_id": settings.tiktok_app_id,
                    "redirect_uri": settings.tiktok_redirect_uri,
                    "emulator_advertisers": advertiser,
                },
                "auth_code",
            )
            flow = flows[Flow.ADVERTISER]
            await flow.store(await flow.exchange(code), Origin())
        code = await code_from(
            emulator,
            "/v2/auth/authorize/",
            {
                "client_key": settings.tiktok_app_id,
                "response_type": "code",
                "scope": "user.info.basic",
                "redirect_uri": settings.tiktok_redirect_uri,
            },
            "code",
        )
        account = flows[Flow.TIKTOK_ACCOUNT]
        await account.store(await account.exchange(code), Origin())
        return (await service.api_keys.create("shutdown", [])).key.get_secret_value()


async def refused(port: int) -> None:
    """Wait (bounded) until the port refuses new connections."""
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: the connection was in the backlog when the listening socket closed.
            return
        writer.close()
        await writer.wait_closed()
        assert time.monotonic() < deadline, "the port still accepts connections"
        await asyncio.sleep(0.02)


async def test_sigterm_answers_requests_in_flight_then_exits_0(
    migrated: str, pg: asyncpg.Connection, canaries: Canaries, tmp_path: Path
) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    emulator_sock = bind_socket("127.0.0.1", 0)
    emulator_url = f"http://127.0.0.1:{emulator_sock.getsockname()[1]}"
    app = EmulatorApp(
        app_id="emulator-app",
        secret=SECRET,
        redirect_uris=[callback],
        account_redirect_uri=callback,
        scopes=[4, 100, 200, 300],
    )
    emulator = create_emulator_app(EmulatorConfig(apps=[app], qps=0, qpm=0, qpd=0))
    env = {
        "TIKTOK_APP_ID": app.app_id,
        "TIKTOK_APP_SECRET": SECRET,
        "TIKTOK_REDIRECT_URI": callback,
        "TIKTOK_AUTH_URL": f"{emulator_url}/portal/auth",
        "TIKTOK_ACCOUNT_AUTH_URL": f"{emulator_url}/v2/auth/authorize/",
        "TIKTOK_API_BASE_URL": f"{emulator_url}/open_api/v1.3",
        "DATABASE_URL": migrated,
        "TOKEN_ENCRYPTION_KEYS": KEYS,
        "WORKER_ENABLED": "false",
        # The calls TikTok holds must outlast the signal: released by the test, never timed out.
        "TIKTOK_TIMEOUT_SECONDS": "60",
        # A read soon serves the stored token and leaves its refresh running.
        "REFRESH_WAIT_SECONDS": "0.2",
    }
    fields: dict[str, Any] = {name.lower(): value for name, value in env.items()}
    settings = Settings(_env_file=None, **fields)
    canaries.add(SECRET)
    async with (
        serving(emulator, emulator_sock),
        httpx.AsyncClient(base_url=emulator_url, timeout=60) as emulator_http,
    ):
        admin = EmulatorAdmin(emulator_http)
        key = await seed(settings, emulator_http)
        canaries.add(key)
        tokens = await issued_tokens(admin, canaries)
        # The account token in its last minute, a day old: the next read refreshes it.
        await pg.execute(
            "UPDATE oauth_grant SET expires_at = now() + interval '1 minute',"
            " refreshed_at = now() - interval '1 day' WHERE open_id = $1",
            OPEN_ID,
        )
        seeded = await pg.fetchval(
            "SELECT refreshed_at FROM oauth_grant WHERE open_id = $1", OPEN_ID
        )
        await admin.fault(LIST, *[{"hang": True}] * len(ADVERTISERS))
        await admin.fault(REFRESH, {"hang": True})

        # One server process: refused connections are what SIGTERM does to its socket.
        process = await spawn_serve(port, 1, {**env, "TMPDIR": str(tmp_path)})
        assert process.stderr is not None
        stderr = Stderr(process.stderr)
        try:
            await stderr.wait_for("started: process")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                checks = [
                    asyncio.create_task(http.post(f"/tokens/{adv}/check", headers=bearer(key)))
                    for adv in ADVERTISERS
                ]
                read = await http.get(f"/tokens/accounts/{OPEN_ID}", headers=bearer(key))
                assert read.status_code == 200, read.text
                await admin.wait_hanging(len(ADVERTISERS) + 1)  # both checks and the refresh

                process.send_signal(signal.SIGTERM)
                await refused(port)
                assert process.returncode is None  # still answering the checks in flight
                await admin.release(LIST)
                answers = await asyncio.gather(*checks)
            assert [answer.status_code for answer in answers] == [200, 200], answers
            served = {
                answer.json()["advertiser_id"]: answer.json()["access_token"] for answer in answers
            }
            assert served == {
                adv: token["access_token"]
                for token in tokens["advertiser_tokens"]
                for adv in token["advertiser_ids"]
            }

            # The refresh the read stopped waiting for is still in flight: the process waits.
            await stderr.wait_for("refresh(es) in flight")
            assert process.returncode is None
            await admin.release(REFRESH)
            async with asyncio.timeout(10):
                assert await process.wait() == 0
            await stderr.reader
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await admin.release()
        # The refresh landed: saved, lease released, TikTok answered it once.
        grant = await pg.fetchrow(
            "SELECT refreshed_at, lease_until, failures FROM oauth_grant WHERE open_id = $1",
            OPEN_ID,
        )
        assert grant["refreshed_at"] > seeded and grant["lease_until"] is None, dict(grant)
        assert [call["code"] for call in await admin.calls(REFRESH)] == [0]
        await issued_tokens(admin, canaries)
    text = "".join(stderr.lines)
    assert "has shut down" in text
    assert not [value for value in canaries.values if value in text]
