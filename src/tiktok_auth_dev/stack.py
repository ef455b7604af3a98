"""The local stack: embedded PostgreSQL, the TikTok emulator and the service, wired together.

Used by `tiktok-auth-service dev` and by the end-to-end tests. This module (with the emulator)
is development tooling: the service itself never imports either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.clock import Clock
from tiktok_auth_service.config import Settings
from tiktok_auth_service.db import migrate
from tiktok_auth_service.models.grants import Flow
from tiktok_auth_service.ops.api_keys import ApiKeys
from tiktok_emulator import EmulatorApp, EmulatorConfig, create_emulator_app


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its owner (so two can share one event loop)
    and says when it is ready to accept connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass(frozen=True)
class Stack:
    service_url: str
    emulator_url: str
    settings: Settings
    service: FastAPI
    emulator: Starlette


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket) -> AsyncIterator[None]:
    """Serve `app` on an already bound socket for the duration of the block."""
    # A bounded graceful shutdown: Ctrl-C must not wait on a request the emulator keeps hanging.
    server = QuietServer(
        uvicorn.Config(
            app,
            log_level="warning",
            # As in `serve`: uvicorn's lines go through the handlers the command configured
            # (and reach the tests' log capture) instead of uvicorn's own.
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        await task  # raises the startup error
        raise RuntimeError("server stopped during startup")
    try:
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def run_stack(
    *,
    database_url: str,
    encryption_keys: str,
    host: str = "127.0.0.1",
    service_port: int = 0,
    emulator_port: int = 0,
    emulator_config: dict[str, Any] | None = None,
    clock: Clock | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Stack]:
    """Serve the emulator and the service on loopback, each configured to reach the other.

    Port 0 picks free ports (the tests); the sockets are bound before either app is configured
    so each can be told the other's real address.
    """
    emulator_sock, service_sock = bind_socket(host, emulator_port), bind_socket(host, service_port)
    emulator_url = f"http://{host}:{emulator_sock.getsockname()[1]}"
    service_url = f"http://{host}:{service_sock.getsockname()[1]}"
    callback = f"{service_url}/callback"
    app_entry = EmulatorApp(
        app_id="emulator-app",
        secret="emulator-secret",  # noqa: S106 - the emulator's well-known dev credential
        redirect_uris=[callback],
        account_redirect_uri=callback,
        scopes=[4, 100, 200, 300],
    )
    emulator = create_emulator_app(EmulatorConfig(apps=[app_entry], **(emulator_config or {})))
    settings_overrides.setdefault("return_to_allowed_origins", [service_url])
    settings = Settings(
        _env_file=None,
        tiktok_app_id=app_entry.app_id,
        tiktok_app_secret=app_entry.secret,
        tiktok_redirect_uri=callback,
        tiktok_auth_url=f"{emulator_url}/portal/auth",
        tiktok_account_auth_url=f"{emulator_url}/v2/auth/authorize/",
        tiktok_api_base_url=f"{emulator_url}/open_api/v1.3",
        database_url=database_url,
        token_encryption_keys=encryption_keys,
        **settings_overrides,
    )
    service = create_app(settings, clock=clock)
    async with serving(emulator, emulator_sock), serving(service, service_sock):
        yield Stack(service_url, emulator_url, settings, service, emulator)


def _read_or_create(path: Path, make: Any) -> str:
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


async def _dev_api_key(api_keys: ApiKeys, path: Path) -> str:
    """The local API key, created once and kept in the data folder."""
    if path.exists():
        key = path.read_text().strip()
        if await api_keys.is_active(key):
            return key
    created = await api_keys.create(f"dev-{os.urandom(4).hex()}", [])
    key = created.key.get_secret_value()
    path.write_text(key)
    path.chmod(0o600)
    return key


def _taken_port(host: str, ports: dict[str, tuple[int, str]]) -> str | None:
    """A one-line complaint about the first of `ports` already in use, or None."""
    for what, (port, option) in ports.items():
        try:
            bind_socket(host, port).close()
        except OSError:
            return (
                f"port {port} ({what}) is already in use: stop what holds it or pick "
                f"another with {option}"
            )
    return None


def _write_env(path: Path, settings: Settings) -> None:
    """The stack's settings, for other commands (`api-keys create`, ...) to use while it runs."""
    values = {
        "TIKTOK_APP_ID": settings.tiktok_app_id,
        "TIKTOK_APP_SECRET": settings.tiktok_app_secret.get_secret_value(),
        "TIKTOK_REDIRECT_URI": settings.tiktok_redirect_uri,
        "TIKTOK_AUTH_URL": settings.tiktok_auth_url,
        "TIKTOK_ACCOUNT_AUTH_URL": settings.tiktok_account_auth_url,
        "TIKTOK_API_BASE_URL": settings.tiktok_api_base_url,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TOKEN_ENCRYPTION_KEYS": settings.token_encryption_keys.get_secret_value(),
        "RETURN_TO_ALLOWED_ORIGINS": ",".join(settings.return_to_allowed_origins),
    }
    path.write_text("".join(f"{name}='{value}'\n" for name, value in values.items()))
    path.chmod(0o600)


async def _forget_stored_grants(database_url: str) -> int:
    """The emulator starts empty every run, so grants kept from an earlier run hold tokens it
    would refuse (40105): drop them rather than serve them as active."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", "", 1))
    try:
        deleted = await connection.fetchval(
            "WITH gone AS (DELETE FROM oauth_grant RETURNING 1) SELECT count(*) FROM gone"
        )
    finally:
        await connection.close()
    return int(deleted)


async def _dev(data_dir: Path, host: str, port: int, emulator_port: int) -> int:
    taken = _taken_port(
        host, {"the service": (port, "--port"), "the emulator": (emulator_port, "--emulator-port")}
    )
    if taken:
        print(f"error: {taken}", file=sys.stderr)
        return 2
    # Handlers first: a signal during start-up must still end in a clean stop, PostgreSQL
    # included (the default SIGTERM would leave it running).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    keys = _read_or_create(
        data_dir / "encryption-keys",
        lambda: "dev:" + base64.b64encode(os.urandom(32)).decode(),
    )
    with embedded_postgres(data_dir / "postgres") as database_url:
        await migrate(database_url)
        forgotten = await _forget_stored_grants(database_url)
        async with run_stack(
            database_url=database_url,
            encryption_keys=keys,
            host=host,
            service_port=port,
            emulator_port=emulator_port,
        ) as stack:
            service = app_service(stack.service)
            key = await _dev_api_key(service.api_keys, data_dir / "api-key")
            env_file = data_dir / "env"
            _write_env(env_file, stack.settings)
            link = await service.connect_sessions.open_session(key, Flow.ADVERTISER, None, "dev")
            advertiser = "7100000000000000001"
            sessions = f"{stack.service_url}/connect-sessions"
            if forgotten:
                print(
                    f"note: dropped {forgotten} grant(s) stored by an earlier run; the emulator "
                    "starts empty each time and would refuse their tokens",
                    flush=True,
                )
            print(
                "\ntiktok-auth-service is running with a local TikTok emulator.\n\n"
                f"  Connect advertisers:  {link.url}\n"
                "                        (works once, for "
                f"{stack.settings.state_ttl_seconds // 60} minutes; open another with\n"
                f"                        curl -H 'Authorization: Bearer {key}' "
                "-H 'Content-Type: application/json'\n"
                f'                          -d \'{{"flow": "advertiser"}}\' {sessions}\n'
                '                        or "tiktok_account" to connect a TikTok account)\n'
                f"  API docs:             {stack.service_url}/docs\n"
                f"  Emulator state:       {stack.emulator_url}/_emulator/state\n"
                f"  Fetch a token:        curl -H 'Authorization: Bearer {key}' "
                f"{stack.service_url}/tokens/{advertiser}\n"
                "  Another API key:      (set -a; . "
                f"{env_file}; exec uv run tiktok-auth-service api-keys create NAME)\n\n"
                f"Data is kept in {data_dir}/ between runs (settings in {env_file}). "
                "Press Ctrl-C to stop.\n",
                flush=True,
            )
            await stop.wait()
    print("stopped", flush=True)
    return 0


def main(data_dir: Path, host: str, port: int, emulator_port: int) -> int:
    """Run the local stack until Ctrl-C or SIGTERM; the exit status."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_dev(data_dir.resolve(), host, port, emulator_port))
